"""Run a command as the terminal's foreground process group: `make run` uses it so that Ctrl-C
reaches the server and worker (which stop and exit 0) and not `make` itself, which would
otherwise die of the signal and report an error for what is the normal way out.

Without a terminal (CI, a pipe) it simply runs the command."""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: foreground.py COMMAND [ARG...]")
    tty = sys.stdin.fileno()
    if os.isatty(tty):
        try:
            os.setpgid(0, 0)
            # A background group asking for the terminal gets SIGTTOU unless it ignores it.
            previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(tty, os.getpgrp())
            signal.signal(signal.SIGTTOU, previous)
        except OSError:
            pass  # not the terminal's session (e.g. under a pty without job control): run as is
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
