"""Reading one ECG lead for the device: a WFDB record or a CSV (file or standard input), whole or
in chunks. Python 3.6+, numpy (wfdb only for records).

Units: any amplitude unit works (mV, uV, ADC counts, inverted polarity scale factors): stage 1
divides every beat by the mean R height, and each scalogram is |CWT| scaled to 0-255 on its own,
so a constant gain cancels; the detector's thresholds adapt to the signal's own peak heights.

CSV: one sample per line, comma, semicolon or tab separated (whitespace when none of these is in
the first line); a first line whose chosen field is not a number is a header. `column` is a
header name or a 0-based index (default 0); blank lines and lines starting with '#' are skipped.
Empty, non-numeric, NaN or infinite values (and rows too short for the column) are gaps:
a gap of at most MAX_GAP_S seconds is filled by linear interpolation between its neighbours (at
the very start or end: the nearest value) and counted in a warning; a longer gap is an error
naming the lines. A last line without a line end (a stream cut mid-line, or a file without a
final newline) is dropped with a warning: it may be incomplete.
"""
import sys
import time

import numpy as np

from .common import DeviceError

MIN_FS = 100.0
MAX_GAP_S = 0.1


class Signal(object):
    """One lead: samples, rate, a name for messages, and the beat annotations when there are any."""

    def __init__(self, x, fs, name, ann_samples=None, ann_symbols=None):
        self.x, self.fs, self.name = x, float(fs), name
        self.ann_samples, self.ann_symbols = ann_samples, ann_symbols


def check_fs(fs, name):
    if fs is None:
        raise DeviceError("{}: give the sampling rate of a CSV with --fs HZ".format(name))
    if not np.isfinite(fs) or fs < MIN_FS:
        raise DeviceError("{}: sampling rate {:g} Hz is below {:g} Hz: too low to find and classify QRS "
                          "complexes".format(name, fs, MIN_FS))


def check_signal(x, fs, name, window_s):
    """Refuse signals no beat can be found in (whole-signal input)."""
    if len(x) == 0:
        raise DeviceError("{}: the signal is empty".format(name))
    if len(x) / float(fs) < window_s:
        raise DeviceError("{}: the signal is {:.3f} s long, shorter than one beat window ({:.3f} s)".format(
            name, len(x) / float(fs), window_s))
    if not np.all(np.isfinite(x)):
        raise DeviceError("{}: the signal has NaN or infinite samples".format(name))
    if np.ptp(x) == 0:
        raise DeviceError("{}: the signal is flat (every sample is {:g}): no beats to classify".format(name, x[0]))


def read_wfdb(path, lead=None, annotations=True):
    """A WFDB record's lead (name or 0-based index; default the first) and its .atr, if any."""
    try:
        import wfdb
    except ImportError:
        raise DeviceError("record input needs the wfdb package (pip3 install wfdb)")
    try:
        header = wfdb.rdheader(path)
    except Exception as e:
        raise DeviceError("{}.hea: cannot read the record header ({})".format(path, e))
    names = list(header.sig_name or [])
    if lead is None or lead == "":
        channel = 0
    elif str(lead) in names:
        channel = names.index(str(lead))
    elif str(lead).lstrip("-").isdigit() and 0 <= int(lead) < len(names):
        channel = int(lead)
    else:
        raise DeviceError("{}.hea: no lead '{}' (the record has {})".format(path, lead, ", ".join(names)))
    check_fs(header.fs, path + ".hea")
    try:
        x = wfdb.rdrecord(path, channels=[channel]).p_signal[:, 0].astype(np.float64)
    except Exception as e:
        raise DeviceError("{}.dat: cannot read the signal ({})".format(path, e))
    samples = symbols = None
    if annotations:
        try:
            ann = wfdb.rdann(path, "atr")
            samples, symbols = np.asarray(ann.sample, dtype=np.int64), np.asarray(ann.symbol)
        except (IOError, OSError):
            pass
        except Exception as e:
            raise DeviceError("{}.atr: cannot read the annotations ({})".format(path, e))
    bad = ~np.isfinite(x)
    if bad.any():
        x = GapFiller(header.fs, path + ".dat").fill_all(np.where(bad, np.nan, x))
    return Signal(x, header.fs, "{} (lead {})".format(path, names[channel] if names else channel), samples, symbols)


class GapFiller(object):
    """Linear interpolation over short runs of NaN, fed in chunks (a stream) or at once (a file):
    the values out are the same either way. Trailing NaNs wait for the next number."""

    def __init__(self, fs, name):
        self.max_gap = int(round(MAX_GAP_S * fs))
        self.name = name
        self.last = None        # the last number given out
        self.pending = 0        # NaNs waiting for their right neighbour
        self.pending_line = None
        self.filled = 0

    def push(self, v, lines=None):
        """Filled values of v (NaN = gap); `lines` (same length) names the source lines in errors."""
        v = np.asarray(v, dtype=np.float64)
        out = []
        nan = np.isnan(v)
        if not nan.any() and not self.pending:
            if len(v):
                self.last = v[-1]
            return v
        # runs of NaN: fill each as soon as its right neighbour is known
        i, n = 0, len(v)
        while i < n:
            if nan[i]:
                j = i
                while j < n and nan[j]:
                    j += 1
                if self.pending == 0:
                    self.pending_line = lines[i] if lines is not None else None
                self.pending += j - i
                self._check_gap()
                i = j
            else:
                j = i
                while j < n and not nan[j]:
                    j += 1
                if self.pending:
                    out.append(self._bridge(v[i]))
                out.append(v[i:j])
                self.last = v[j - 1]
                i = j
        return np.concatenate(out) if out else np.zeros(0)

    def _check_gap(self):
        if self.pending > self.max_gap:
            where = " from line {}".format(self.pending_line) if self.pending_line is not None else ""
            raise DeviceError("{}: {} missing or non-numeric values in a row{} (more than {:g} s; gaps up to "
                              "that are interpolated)".format(self.name, self.pending, where, MAX_GAP_S))

    def _bridge(self, right):
        k = self.pending
        left = right if self.last is None else self.last
        fill = left + (right - left) * (np.arange(1, k + 1) / float(k + 1))
        self.filled += k
        self.pending = 0
        return fill

    def finish(self):
        """The NaNs at the very end take the last number."""
        k, self.pending = self.pending, 0
        if k and self.last is None:
            raise DeviceError("{}: no numeric values".format(self.name))
        self.filled += k
        return np.full(k, self.last if k else 0.0)

    def fill_all(self, v):
        out = np.concatenate([self.push(v), self.finish()])
        self.warn()
        return out

    def warn(self):
        if self.filled:
            sys.stderr.write("warning: {}: {} missing or non-numeric values filled by linear interpolation (gaps of "
                             "up to {:g} s are filled, longer ones are errors)\n".format(self.name, self.filled,
                                                                                     MAX_GAP_S))


def _split(line, sep):
    return line.split(sep) if sep else line.split()


def _number(s):
    try:
        return float(s)
    except ValueError:
        return np.nan


class CsvReader(object):
    """Lines of a CSV lead -> arrays of samples (NaN where a value is missing or not a number)."""

    def __init__(self, f, name, column=None):
        self.f, self.name, self.column = f, name, column
        self.sep, self.index, self.line_no, self.cut = None, None, 0, False

    def _header(self, line):
        self.sep = next((c for c in (",", ";", "\t") if c in line), None)
        fields = [s.strip().strip('"') for s in _split(line, self.sep)]
        col = self.column
        is_header = any(np.isnan(_number(s)) and s.lower() not in ("nan", "") for s in fields)
        if col is None or col == "":
            self.index = 0
        elif is_header and col in fields:
            self.index = fields.index(col)
        elif str(col).isdigit() and int(col) < len(fields):
            self.index = int(col)
        else:
            where = "columns: " + ", ".join(fields) if is_header else "{} columns, no header".format(len(fields))
            raise DeviceError("{}: no column '{}' ({})".format(self.name, col, where))
        return is_header

    def read(self, n):
        """Up to n samples with their line numbers ([] at the end of the input)."""
        values, lines = [], []
        while len(values) < n:
            line = self.f.readline()
            if not line:
                break
            self.line_no += 1
            if not line.endswith("\n"):
                sys.stderr.write("warning: {}: the last line ({}) has no line end and may be cut: dropped\n".format(
                    self.name, self.line_no))
                self.cut = True
                break
            if self.index is not None:   # the common line, a plain number, parsed without splitting and stripping
                try:
                    values.append(float(line) if self.index == 0 and self.sep is None
                                  else float(line.split(self.sep)[self.index]))
                    lines.append(self.line_no)
                    continue
                except (ValueError, IndexError):
                    pass                 # anything else takes the careful way below
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if self.index is None and self._header(line):
                continue
            fields = _split(line, self.sep)
            values.append(_number(fields[self.index].strip().strip('"')) if self.index < len(fields) else np.nan)
            lines.append(self.line_no)
        v = np.asarray(values, dtype=np.float64)
        v[~np.isfinite(v)] = np.nan
        return v, lines


def open_csv(path):
    if path == "-":
        return sys.stdin, "<stdin>"
    try:
        return open(path, "r"), path
    except (IOError, OSError) as e:
        raise DeviceError("{}: cannot open the CSV ({})".format(path, e.strerror or e))


def csv_chunks(path, fs, column, chunk, realtime=None):
    """Generator of filled sample arrays of `chunk` samples from a CSV (file or '-'), paced at
    `realtime` x real time when given. Yields (samples, arrival time of its last sample)."""
    check_fs(fs, path)
    f, name = open_csv(path)
    reader, filler = CsvReader(f, name, column), GapFiller(fs, name)
    t0 = time.perf_counter()
    done = 0
    try:
        while True:
            v, lines = reader.read(chunk)
            if len(v) == 0:
                break
            done += len(v)
            if realtime:
                wait = t0 + done / (fs * realtime) - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            out = filler.push(v, lines)
            if len(out):
                yield out, time.perf_counter()
        if reader.line_no == 0 or (done == 0):
            raise DeviceError("{}: no samples".format(name))
        tail = filler.finish()
        filler.warn()
        yield tail, time.perf_counter()
    finally:
        if f is not sys.stdin:
            f.close()


def read_csv(path, fs, column=None):
    """A whole CSV lead (file or '-') as a Signal."""
    parts = [p for p, _ in csv_chunks(path, fs, column, 1 << 16)]
    return Signal(np.concatenate(parts), fs, path if path != "-" else "<stdin>")


def array_chunks(x, fs, chunk, realtime=None):
    """The same generator over samples already in memory (a WFDB record played as a stream)."""
    t0 = time.perf_counter()
    for start in range(0, len(x), chunk):
        end = min(start + chunk, len(x))
        if realtime:
            wait = t0 + end / (fs * realtime) - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        yield x[start:end], time.perf_counter()
