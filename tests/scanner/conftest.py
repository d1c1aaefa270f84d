"""The corpus is built once per test session into a temporary folder, and the proof that its
malicious files fire runs once, in a throwaway process (tests/scanner/fire.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scanner import corpus as corpus_module

FIRE_SCRIPT = Path(__file__).with_name("fire.py")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> corpus_module.Corpus:
    return corpus_module.build(tmp_path_factory.mktemp("scanner-corpus"))


@pytest.fixture(scope="session")
def fired(corpus) -> dict[str, bool]:
    """{variant name: whether its payload ran} when loaded unsafely in a throwaway process."""
    jobs = [{"path": str(m.path), "loader": m.loader, "marker": str(m.marker)}
            for m in corpus.malicious]
    assert not any(m.marker.exists() for m in corpus.malicious), "markers exist before loading"
    done = subprocess.run([sys.executable, str(FIRE_SCRIPT)], input=json.dumps(jobs),
                          capture_output=True, text=True, timeout=600, check=True)
    by_path = json.loads(done.stdout)
    return {m.name: by_path[str(m.path)] for m in corpus.malicious}


@pytest.fixture(scope="session")
def scans(corpus) -> dict[str, object]:
    from models.scanner import scan_path

    return {item.name: scan_path(item.path) for item in corpus.malicious + corpus.benign}
