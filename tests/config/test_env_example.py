"""`.env.example` lists every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = re.compile(r"""(?:env_(?:str|bool|int|bytes|list|path)\(|os\.environ(?:\.get)?[\[(]|"""
                     r"""environ\.setdefault\()\s*["']([A-Z][A-Z0-9_]+)["']""")
SHELL_VARS = re.compile(r"\$\{([A-Z][A-Z0-9_]+):-")
IGNORED = {"CI", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "HF_HUB_OFFLINE",
           "PYTHONPATH", "HOME", "PATH"}


def documented() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]+)=", line)
        if match:
            names.add(match[1])
    return names


def project_files() -> list[Path]:
    """The project's own files (tracked, or new and not ignored): never a virtualenv's."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in listed.splitlines()
            if line and not line.startswith("tests/") and (ROOT / line).is_file()]


def used() -> set[str]:
    names = set()
    for path in project_files():
        if path.suffix == ".py":
            names |= set(READERS.findall(path.read_text()))
        elif path.suffix == ".sh":
            names |= set(SHELL_VARS.findall(path.read_text()))
    return names - IGNORED


def test_every_variable_the_code_reads_is_in_env_example():
    missing = used() - documented()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_the_scan_finds_the_settings_it_should():
    assert {"DATABASE_URL", "STAGEGATE_MAX_FILE_SIZE", "STAGEGATE_PORT", "SECRET_KEY"} <= used()
