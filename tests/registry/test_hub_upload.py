"""Submitting with the stock Hugging Face client: upload_folder into Stagegate over Xet (the
default) and over LFS (HF_HUB_DISABLE_XET=1), each commit a checkpoint like any submission."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.models import Checkpoint
from tests.checkpoints import write_model_folder
from tests.conftest import make_persona, token_for
from tests.registry.hubclient import run_python

pytestmark = pytest.mark.django_db(transaction=True)

MODES = [pytest.param(True, id="xet"), pytest.param(False, id="lfs")]


def submit_cli_digest(folder, family: str, label: str) -> str:
    proc = subprocess.run([sys.executable, "manage.py", "submit_checkpoint", str(folder),
                           "--family", family, "--label", label, "--user", "alice", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["manifest_digest"]


@pytest.mark.parametrize("xet", MODES)
def test_upload_folder_makes_the_checkpoint_submit_checkpoint_would(stagegate_server, tmp_path, xet):
    alice = make_persona("alice")
    token = token_for(alice, "submit")
    folder = write_model_folder(tmp_path / "ckpt", shards=2)
    proc, result = run_python(stagegate_server, token, tmp_path / "home", f"""
        api.create_repo("lab/tiny", private=True)
        info = api.upload_folder(folder_path={str(folder)!r}, repo_id="lab/tiny")
        print(json.dumps({{"oid": info.oid}}))
    """, xet=xet)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = Checkpoint.objects.get(family__org="lab", family__name="tiny")
    assert result["oid"] == checkpoint.commit
    from models.blobstore import StagedFile  # noqa
    from models.manifest import manifest_digest
    import hashlib
    expected = manifest_digest((p.relative_to(folder).as_posix(),
                                hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)
                               for p in folder.rglob("*") if p.is_file())
    assert checkpoint.manifest_digest == expected
