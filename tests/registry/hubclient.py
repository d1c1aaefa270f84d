"""Run the stock huggingface_hub client (with hf_xet, as installed from PyPI) in its own
process against a live Stagegate, as a user would: HF_ENDPOINT, HF_TOKEN, a fresh cache, and
with or without HF_HUB_DISABLE_XET=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HF = Path(sys.executable).with_name("hf")


def client_env(server, token: str | None, home: Path, *, xet: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({"HF_ENDPOINT": server.url, "HF_HOME": str(home), "HF_XET_CACHE": str(home / "xet"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    if token:
        env["HF_TOKEN"] = token
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    return env


def run_python(server, token, home: Path, code: str, *, xet: bool = True, timeout: float = 300):
    """Run `code` (which prints one JSON line last) with HfApi() pointed at the server."""
    script = "import json, sys\nfrom huggingface_hub import HfApi\napi = HfApi()\n" + \
        textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], env=client_env(server, token, home, xet=xet),
                          capture_output=True, text=True, timeout=timeout)
    result = None
    if proc.returncode == 0 and proc.stdout.strip():
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, result


def run_hf(server, token, home: Path, *args: str, xet: bool = True, timeout: float = 300):
    return subprocess.run([str(HF), *args], env=client_env(server, token, home, xet=xet),
                          capture_output=True, text=True, timeout=timeout)
