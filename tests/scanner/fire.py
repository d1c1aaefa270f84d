"""Proves malicious corpus files run their payload: a throwaway process loads each one.

Run as a script (never imported by the test process): it reads a JSON list of
{"path", "loader", "marker"} on stdin, imports torch and numpy once, then forks one child per
file. The child moves into an empty temporary folder, loads the file the way a victim would
(`torch.load(weights_only=False)`, `pickle.load`, `np.load(allow_pickle=True)`) and exits; the
parent kills it after a timeout. Payloads only create their marker file, so whether a marker
exists afterwards says whether the payload ran. Prints {path: fired} as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time

CHILD_TIMEOUT = 30.0


def load(path: str, loader: str) -> None:
    if loader == "torch":
        import torch
        torch.load(path, weights_only=False, map_location="cpu")
    elif loader == "pickle":
        import pickle
        with open(path, "rb") as handle:
            pickle.load(handle)
    elif loader == "numpy":
        import numpy
        loaded = numpy.load(path, allow_pickle=True)
        for key in getattr(loaded, "files", []):
            loaded[key]
    else:
        raise ValueError(loader)


def run_one(path: str, loader: str, workdir: str) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(workdir)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            signal.alarm(int(CHILD_TIMEOUT))
            load(path, loader)
        except BaseException:
            pass
        finally:
            os._exit(0)
    deadline = time.monotonic() + CHILD_TIMEOUT + 5
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def main() -> None:
    jobs = json.load(sys.stdin)
    import numpy  # noqa: F401  (imported once, before forking, to keep each child fast)
    import torch  # noqa: F401
    with tempfile.TemporaryDirectory() as workdir:
        for job in jobs:
            run_one(job["path"], job["loader"], workdir)
    # Payloads that start a process (Popen, os.popen) may finish just after the loader exits.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(os.path.exists(j["marker"]) for j in jobs):
        time.sleep(0.1)
    json.dump({job["path"]: os.path.exists(job["marker"]) for job in jobs}, sys.stdout)


if __name__ == "__main__":
    main()
