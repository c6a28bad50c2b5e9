"""One ECG lead from an EDF / EDF+ (or BDF) file for the device, whole or N samples at a time
(bounded memory: a day-long Holter file is never read whole in a stream). Python 3.6+, numpy;
pyedflib, imported only when an EDF file is read (Python 3.6: pyedflib<=0.1.32).

The lead: `lead` is a signal label (e.g. "MLII") or a 0-based index among the file's ordinary
signals (EDF+ annotation channels are not counted: pyedflib does not list them); default the
first. Its rate is the file's (samples per data record / record duration). Samples are physical
values (pyedflib maps digital to physical with the signal's digital and physical min/max) in mV
when the physical dimension is a voltage (V, mV, uV, nV), as signal_input.read_wfdb gives them;
any other dimension is used as it is, with a warning (a constant gain cancels in the model).

The fixed header is checked here first (pyedflib's C library prints a size mismatch on standard
output and names problems less precisely): an EDF+D file (discontinuous: gaps in time between
data records) is refused, as is a file shorter than its header says.
"""
import os
import sys
import time

import numpy as np

from .common import DeviceError
from .signal_input import Signal, check_fs, check_signal

TO_MV = {"v": 1000.0, "mv": 1.0, "uv": 1e-3, u"\u00b5v": 1e-3, u"\u03bcv": 1e-3, "nv": 1e-6}
DO_NOT_READ_ANNOTATIONS = 0   # pyedflib's annotations_mode: skip the scan of every data record at open


def _field(raw, start, end, what, path, kind=int):
    text = raw[start:end].decode("ascii", "replace").strip()
    try:
        return kind(text)
    except ValueError:
        raise DeviceError("{}: not an EDF file (the header's {} field is '{}', not a number)".format(path, what, text))


def check_header(path):
    """The fixed header of an EDF/BDF file: refuse a missing, foreign, discontinuous or truncated file."""
    if not os.path.isfile(path):
        raise DeviceError("{}: {}".format(path, "is a folder, not an EDF file" if os.path.isdir(path) else
                                          "no such file"))
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(256)
            version = raw[:8]
            bdf = version == b"\xffBIOSEMI"
            if len(raw) < 256 or not (version == b"0       " or bdf):
                raise DeviceError("{}: not an EDF file ({}; an EDF file starts with a 256-byte header whose "
                                  "first 8 bytes are '0' and spaces)".format(
                                      path, "{} bytes".format(size) if len(raw) < 256 else
                                      "it starts with {!r}".format(version)))
            header_bytes = _field(raw, 184, 192, "header size", path)
            reserved = raw[192:236].decode("ascii", "replace")
            records = _field(raw, 236, 244, "number of data records", path)
            _field(raw, 244, 252, "data record duration", path, float)
            signals = _field(raw, 252, 256, "number of signals", path)
            if signals < 1 or header_bytes != 256 * (signals + 1):
                raise DeviceError("{}: not an EDF file (a header of {} bytes for {} signals; EDF has 256 per signal "
                                  "plus 256)".format(path, header_bytes, signals))
            f.seek(256 + 216 * signals)   # each signal's samples per data record
            per_record = f.read(8 * signals)
    except (IOError, OSError) as e:
        raise DeviceError("{}: cannot read the file ({})".format(path, e.strerror or e))
    if reserved[:5] in ("EDF+D", "BDF+D"):
        raise DeviceError("{}: an {} file (discontinuous: its data records have gaps in time between them), which "
                          "this device does not read: export it as continuous EDF+C, or one file per continuous "
                          "stretch".format(path, reserved[:5]))
    if records < 1:
        raise DeviceError("{}: the header gives {} data records (-1: the recording was not closed properly)".format(
            path, records))
    samples = [_field(per_record, 8 * i, 8 * i + 8, "samples per data record", path) for i in range(signals)]
    expected = header_bytes + records * sum(samples) * (3 if bdf else 2)
    if size < expected:
        raise DeviceError("{}: truncated: the header gives {} data records, {} bytes in all, the file has {} "
                          "bytes".format(path, records, expected, size))


def _pyedflib():
    try:
        import pyedflib
    except ImportError:
        raise DeviceError("EDF input needs the pyedflib package (pip3 install pyedflib; on Python 3.6, "
                          "pip3 install 'pyedflib<=0.1.32')")
    return pyedflib


class EdfLead(object):
    """One lead of an EDF file, open: `fs`, `n` (samples), `label`, `name` (for messages), `unit`;
    read(start, n) gives samples in mV (see the module's docstring). close() when done."""

    def __init__(self, path, lead=None):
        check_header(path)
        pyedflib = _pyedflib()
        try:
            self.reader = pyedflib.EdfReader(path, DO_NOT_READ_ANNOTATIONS)
        except (IOError, OSError, ValueError) as e:
            why = str(e)
            why = why[len(path) + 2:] if why.startswith(path + ": ") else why
            raise DeviceError("{}: not a readable EDF/EDF+ file ({})".format(path, why))
        try:
            self._choose(path, lead)
        except DeviceError:
            self.close()
            raise

    def _choose(self, path, lead):
        labels = self.reader.getSignalLabels()
        listing = ", ".join("{} {}".format(i, s) for i, s in enumerate(labels))
        if not labels:
            raise DeviceError("{}: no signals, only EDF+ annotations".format(path))
        if lead is None or lead == "":
            ch = 0
        elif str(lead) in labels:
            ch = labels.index(str(lead))
        elif str(lead).lstrip("-").isdigit():
            ch = int(lead)
            if not 0 <= ch < len(labels):
                raise DeviceError("{}: lead index {} is out of range: the file has {} signal{} ({})".format(
                    path, ch, len(labels), "" if len(labels) == 1 else "s", listing))
        else:
            raise DeviceError("{}: no lead '{}' (the file has {})".format(path, lead, listing))
        self.path, self.channel, self.label = path, ch, labels[ch]
        self.name = "{} (lead {})".format(path, self.label)
        self.fs = float(self.reader.getSampleFrequency(ch))
        check_fs(self.fs, self.name)
        self.n = int(self.reader.getNSamples()[ch])
        self.unit = self.reader.getPhysicalDimension(ch).strip()
        self.scale = TO_MV.get(self.unit.lower())
        if self.scale is None:
            sys.stderr.write("warning: {}: physical dimension '{}' is not a voltage (V, mV, uV, nV): the samples are "
                             "used as they are\n".format(self.name, self.unit))
            self.scale = 1.0

    def read(self, start, n):
        """Samples start .. start+n-1 (fewer at the end of the lead), in mV."""
        n = max(min(n, self.n - start), 0)
        if n == 0:
            return np.zeros(0)
        # pyedflib (0.1.32 and 0.1.42) pads a read past the end with zeros, and says so on stdout
        x = np.asarray(self.reader.readSignal(self.channel, start, n), dtype=np.float64)
        if self.scale != 1.0:
            x *= self.scale   # in place: a day-long lead read whole is 250 MB of float64
        return x

    def check_length(self, window_s):
        """Refuse a lead no beat can be found in before reading it (its length is in the header)."""
        if self.n == 0:
            raise DeviceError("{}: the signal is empty".format(self.name))
        if self.n / self.fs < window_s:
            raise DeviceError("{}: the signal is {:.3f} s long, shorter than one beat window ({:.3f} s)".format(
                self.name, self.n / self.fs, window_s))

    def chunks(self, chunk, realtime=None):
        """Generator of (samples, arrival time of the last one), `chunk` samples each, read from the
        file as they are asked for, paced at `realtime` x real time when given; closes the file at the end."""
        t0 = time.perf_counter()
        try:
            for start in range(0, self.n, chunk):
                x = self.read(start, chunk)
                if realtime:
                    wait = t0 + (start + len(x)) / (self.fs * realtime) - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                yield x, time.perf_counter()
        finally:
            self.close()

    def close(self):
        if getattr(self, "reader", None) is not None:
            self.reader.close()
            self.reader = None


def open_lead(path, lead=None):
    """An EdfLead, every check done (the header, the lead, its rate)."""
    return EdfLead(path, lead)


def check_edf(path, lead=None):
    """Everything about an EDF input that can be refused before any work (infer_trt.check_args)."""
    open_lead(path, lead).close()


def read_edf(path, lead=None):
    """A whole lead as a signal_input.Signal (mV, no annotations)."""
    edf = open_lead(path, lead)
    try:
        x = edf.read(0, edf.n)
    finally:
        edf.close()
    return Signal(x, edf.fs, edf.name)


def edf_chunks(path, lead=None, chunk=1 << 16, realtime=None):
    """Checked now (an error is raised here, not at the first chunk); then a generator like
    signal_input.csv_chunks / array_chunks: (samples in mV, arrival time), `chunk` samples at a time."""
    return open_lead(path, lead).chunks(chunk, realtime)


def open_source(path, lead, stream, chunk_s, realtime, window_s):
    """records.Source for an EDF file: (Signal, chunk generator or None), as for a record or CSV."""
    edf = open_lead(path, lead)
    try:
        edf.check_length(window_s)
    except DeviceError:
        edf.close()
        raise
    if stream:
        return Signal(None, edf.fs, edf.name), edf.chunks(max(int(chunk_s * edf.fs), 1), realtime)
    try:
        x = edf.read(0, edf.n)
    finally:
        edf.close()
    check_signal(x, edf.fs, edf.name, window_s)
    return Signal(x, edf.fs, edf.name), None
