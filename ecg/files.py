"""Atomic file writes: a reader (or a re-run after a crash) never sees a half-written file."""
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def write_bytes(path, data: bytes):
    """Write `data` to a temp file beside `path`, then rename it over `path`."""
    path = os.fspath(path)
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def save_with(path, save_fn, suffix=""):
    """Atomically create `path` with a writer that takes a filename (torch.save, savefig, ...).

    `suffix` keeps the extension on the temp name for writers that infer the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX + suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(folder):
    """Remove temp files left by a run that was killed mid-write."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.rglob("*" + TMP_SUFFIX + "*"):
            if p.is_file():
                p.unlink()


def check_writable(folder):
    """Create `folder` if needed and prove we can write there, before any work starts."""
    from .errors import UserError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, suffix=TMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{folder}: output folder is not writable ({e.strerror or e})") from None
