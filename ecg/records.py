"""MIT-BIH access: find or download the database, check files, read one record.

Every check runs before any output is written, so bad input never leaves partial results.
"""
import hashlib
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import UserError

SUFFIXES = (".hea", ".dat", ".atr")
# Bytes per sample for the storage formats MIT-BIH and most PhysioNet data use.
BYTES_PER_SAMPLE = {"212": 1.5, "16": 2, "80": 1, "61": 2, "160": 2, "310": 4 / 3, "311": 4 / 3}


def data_dir(cfg, cli_value=None, download=True):
    """--data-dir, else MITDB_DIR, else [paths] data_dir (downloaded with wfdb when missing)."""
    if cli_value:
        folder = Path(cli_value)
    elif os.environ.get("MITDB_DIR"):
        folder = Path(os.environ["MITDB_DIR"])
    else:
        folder = cfg.path("data_dir")
        if download and not any(folder.glob("*.hea")):
            _download(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: MIT-BIH folder not found (give --data-dir DIR or set MITDB_DIR)")
    return folder


def _download(folder):
    import wfdb

    print(f"downloading the MIT-BIH Arrhythmia Database into {folder} ...", flush=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        wfdb.dl_database("mitdb", str(folder))
    except Exception as e:  # network errors come in many types
        raise UserError(
            f"could not download MIT-BIH into {folder} ({type(e).__name__}: {e}); offline, point "
            "at a local copy with --data-dir DIR or MITDB_DIR=DIR") from None


def available_records(folder):
    folder = Path(folder)
    listing = folder / "RECORDS"
    if listing.is_file():
        return [r.strip() for r in listing.read_text().split() if r.strip()]
    return sorted(p.stem for p in folder.glob("*.hea"))


def _checksums(folder):
    sums = {}
    path = Path(folder) / "SHA256SUMS.txt"
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def sha256(path):
    """Hex SHA-256 of a file (read in 1 MB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_records(folder, records, fs, resample=False):
    """Validate every requested record; raise UserError naming the first bad file."""
    import wfdb

    folder = Path(folder)
    if not records:
        raise UserError("the record list is empty (check --records or the config's records)")
    sums = _checksums(folder)
    for rec in records:
        base = folder / rec
        if not (folder / f"{rec}.hea").exists() and not any((folder / f"{rec}{s}").exists() for s in SUFFIXES):
            raise UserError(f"record {rec}: no such record in {folder}")
        for suffix in SUFFIXES:
            f = folder / f"{rec}{suffix}"
            if not f.is_file():
                raise UserError(f"{f}: missing ({suffix} file of record {rec})")
            if f.name in sums and sha256(f) != sums[f.name]:
                raise UserError(f"{f}: checksum mismatch with {folder / 'SHA256SUMS.txt'}")
        try:
            header = wfdb.rdheader(str(base))
        except Exception as e:
            raise UserError(f"{base}.hea: unreadable header ({e})") from None
        if header.fs != fs and not resample:
            raise UserError(f"{base}.hea: sampling rate {header.fs:g} Hz, expected {fs} Hz "
                            "(use --resample to resample it)")
        _check_dat_size(base, header)


def _check_dat_size(base, header):
    fmts = {str(f) for f in header.fmt}
    if len(set(header.file_name)) != 1 or len(fmts) != 1 or not header.sig_len:
        return  # unusual layout: wfdb's own read checks it
    per_sample = BYTES_PER_SAMPLE.get(fmts.pop())
    if per_sample is None:
        return
    dat = Path(f"{base}.dat")
    expected = int(np.ceil(header.sig_len * header.n_sig * per_sample)) + int(header.byte_offset[0] or 0)
    size = dat.stat().st_size
    if size < expected:
        raise UserError(f"{dat}: truncated ({size} bytes, the header needs {expected})")


def read_record(folder, rec, lead, fs, resample=False):
    """Lead `lead` in physical units, annotation samples and symbols, at `fs` Hz."""
    import wfdb

    base = str(Path(folder) / rec)
    try:
        record = wfdb.rdrecord(base, channels=[lead])
        ann = wfdb.rdann(base, "atr")
    except Exception as e:
        raise UserError(f"{base}: cannot read record ({type(e).__name__}: {e})") from None
    x = record.p_signal[:, 0]
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = np.asarray(ann.symbol)
    if record.fs != fs:
        if not resample:
            raise UserError(f"{base}.hea: sampling rate {record.fs:g} Hz, expected {fs} Hz")
        from scipy.signal import resample_poly

        ratio = Fraction(fs) / Fraction(record.fs).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator)
        samples = np.round(samples * float(ratio)).astype(np.int64)
        keep = samples < len(x)
        samples, symbols = samples[keep], symbols[keep]
    if not np.isfinite(x).all():
        raise UserError(f"{base}.dat: signal has missing or non-finite samples in lead {lead}")
    return x, samples, symbols
