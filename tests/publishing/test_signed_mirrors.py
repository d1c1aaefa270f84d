"""A Hub target carries the lab's signatures with the files: what erin downloads from the Hub
verifies with the stock model_signing CLI, a gated target's rewritten README.md included (its
model.sig declares README.md unsigned, so --ignore-paths README.md is accepted too)."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from huggingface_hub import snapshot_download

from publishing.models import Mirror
from signing import keys
from tests.hubstandin.process import USERS
from tests.publishing.conftest import FAMILY, REMOTE, add_target, climb, link_accounts, run
from tests.releases.stages import grant, release_at

pytestmark = pytest.mark.django_db(transaction=True)
BIN = Path(sys.executable).parent


def stock_verify(folder: Path, public_key: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "model_signing"), "verify", "key", str(folder),
                           "--signature", str(folder / "model.sig"),
                           "--public_key", str(public_key), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def lab_key(tmp_path) -> Path:
    path = tmp_path / "lab.pub"
    path.write_text(keys.current_key().public.pem)
    return path


def download(hub, tmp_path, name) -> Path:
    folder = tmp_path / name
    snapshot_download(REMOTE, endpoint=hub.url, token=USERS["erin"].token, local_dir=folder,
                      cache_dir=tmp_path / f"cache-{name}")
    return folder


def test_a_gated_target_serves_files_that_verify_with_the_stock_cli(personas, simple_policy,
                                                                    hub, allow, tmp_path,
                                                                    lab_key):
    allow(hub)
    release = release_at(personas, "partners", family=FAMILY)
    grant(personas, release, personas.erin)
    target = add_target(personas, hub)
    link_accounts(personas, hub)
    mirror = run(release, target)
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    partners = download(hub, tmp_path, "partners")
    assert stock_verify(partners, lab_key).returncode == 0

    release = climb(personas, release, "gated")
    grant(personas, release, personas.erin)
    mirror = run(release, target)
    assert mirror.state == Mirror.State.IN_SYNC, mirror.detail
    folder = download(hub, tmp_path, "gated")
    assert (folder / "README.md").read_text().startswith("---\n")  # the Hub's access form
    for extra in ((), ("--ignore-paths", str(folder / "README.md"))):
        done = stock_verify(folder, lab_key, *extra)
        assert done.returncode == 0, done.stdout + done.stderr
    out = StringIO()
    call_command("verify_release", str(folder), "--public-key", str(lab_key),
                 "--ignore-paths", "README.md", stdout=out)
    assert "stage gated" in out.getvalue()

    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    done = stock_verify(folder, lab_key)
    assert done.returncode != 0 and "model.safetensors" in done.stdout + done.stderr
    with pytest.raises(CommandError, match="model.safetensors"):
        call_command("verify_release", str(folder), "--public-key", str(lab_key),
                     "--ignore-paths", "README.md", stdout=StringIO())
