"""Ctrl-C in a terminal is the normal way to stop `make run`: make itself must exit 0.

A terminal sends SIGINT to its whole foreground process group, `make` included, and make dies
of it ("make: *** Interrupt", exit 2) even when the script it runs stops cleanly. The recipe
runs the script through scripts/foreground.py, which takes the terminal for it. Replayed here
in a real pseudo-terminal with an interactive shell, as a newcomer's terminal would be.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "trap 'echo stopped; exit 0' INT; echo ready; while true; do sleep 0.1; done"


def ctrl_c_make(tmp_path: Path, recipe: str) -> str:
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t@{recipe}\n")
    command = f"make -f {shlex.quote(str(makefile))} run; echo MAKE_EXIT=$?; exit"
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive shell in the terminal, with job control
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i", "-c", command])
    output, deadline = b"", time.monotonic() + 30
    sent = False
    while time.monotonic() < deadline:
        if not sent and b"ready" in output:
            os.write(fd, b"\x03")
            sent = True
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the shell exited and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    return output.decode(errors="replace")


def test_ctrl_c_stops_make_run_with_exit_0(tmp_path):
    recipe = f"python3 {ROOT / 'scripts' / 'foreground.py'} bash -c {shlex.quote(SERVICE)}"
    output = ctrl_c_make(tmp_path, recipe)
    assert "stopped" in output and "MAKE_EXIT=0" in output, output
    assert "Interrupt" not in output


def test_without_the_launcher_make_reports_the_interrupt(tmp_path):
    """The control: what newcomers saw before (so the test above can fail)."""
    output = ctrl_c_make(tmp_path, f"bash -c {shlex.quote(SERVICE)}")
    assert "MAKE_EXIT=0" not in output and "Interrupt" in output, output
