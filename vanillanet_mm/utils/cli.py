"""Shared command-line plumbing: one clear line per error, clean signals."""
import contextlib
import signal
import sys
from typing import Callable

from .errors import UserError

#: Errors raised on purpose for bad input (see :mod:`.errors`); anything else
#: is a bug and keeps its traceback.
USER_ERRORS = (UserError, )


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def user_errors(prog: str):
    """Turn user errors raised inside into ``prog: error: …`` and exit 1."""
    try:
        yield
    except USER_ERRORS as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        sys.exit(1)


def run_cli(main: Callable[[], None], prog: str) -> None:
    """Run ``main`` under :func:`user_errors`; SIGTERM/SIGINT become
    ``SystemExit`` so ``finally`` blocks (temp-file cleanup) run."""
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)
    with user_errors(prog):
        main()
