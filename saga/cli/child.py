"""A process of `saga up`, started as `python -m saga.cli.child PARENT_PID ARGS…`: it is
sent SIGTERM when `saga up` dies however it dies (kill -9 too), then runs `saga ARGS…`.

Linux only: there the kernel sends the signal (PR_SET_PDEATHSIG). Other systems have no
such call; there a `saga up` killed with SIGKILL leaves its children running (any signal
it can catch still stops them).
"""

import ctypes
import os
import signal
import sys
from typing import Final

PR_SET_PDEATHSIG: Final = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this process when `parent` dies, where it can."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    # A parent that died before the call above sends nothing: said here, not missed.
    if os.getppid() != parent:
        print(f"saga up (pid {parent}) is gone; not starting", file=sys.stderr)
        raise SystemExit(1)


def main() -> None:
    """Die with the parent, then run the saga command line on the rest of the arguments."""
    parent, *args = sys.argv[1:]
    die_with_parent(int(parent))
    sys.argv = ["saga", *args]
    from saga.cli.main import main as saga

    saga()


if __name__ == "__main__":
    main()
