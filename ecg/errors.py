"""One kind of error for bad user input, reported as one line with exit status 2.

`ECG_DEBUG=1` in the environment prints the full traceback instead, including the exception a
UserError was raised from (kept even where the code says `raise UserError(...) from None`).
"""
import functools
import os
import sys
import traceback

DEBUG_ENV = "ECG_DEBUG"


class UserError(Exception):
    """Bad input or settings: the message names the file and the problem."""

    @property
    def cause(self):
        """The exception behind this one (None if there was none)."""
        return self.__cause__ or self.__context__


def debugging():
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def show_chain(e):
    """Make every exception behind `e` visible in its traceback (undo `from None`)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__suppress_context__ = False
        e = e.__cause__ or e.__context__


def main_guard(fn):
    """Run a script's main(); a UserError becomes 'error: ...' on stderr and exit status 2
    (with ECG_DEBUG=1: the full traceback first)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if debugging():
                show_chain(e)
                traceback.print_exception(e, file=sys.stderr)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
