"""One kind of error for bad user input, reported as one line with exit status 2."""
import functools
import sys


class UserError(Exception):
    """Bad input or settings: the message names the file and the problem."""


def main_guard(fn):
    """Run a script's main(); a UserError becomes 'error: ...' on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
