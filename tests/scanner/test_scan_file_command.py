"""`manage.py scan_file`, run as real processes so the exit statuses are the real ones. The
four runs start together (each pays for Django and torch start-up) and the tests read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(corpus, tmp_path_factory):
    def benign(name):
        return str(next(b.path for b in corpus.benign if b.name == name))

    def bad(name):
        return str(next(m.path for m in corpus.malicious if m.name == name))

    # Imports a harmless class that is on neither list: not proven safe, so `unknown`.
    unlisted = tmp_path_factory.mktemp("unlisted") / "date.pkl"
    unlisted.write_bytes(b"\x80\x02cdatetime\ndate\nq\x00)\x81q\x01.")
    return {"safe": benign("mlp-state-dict-zip"), "legacy": benign("mlp-state-dict-legacy"),
            "unsafe": bad("p2-os-system"), "unknown": str(unlisted),
            "folder": str(corpus.sharded_folder),
            "missing": str(tmp_path_factory.mktemp("none") / "missing.pt")}


@pytest.fixture(scope="module")
def runs(files) -> dict[str, subprocess.CompletedProcess]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings"}
    commands = {
        "all_safe": [files["safe"], files["legacy"]],
        "mixed_json": ["--json", files["safe"], files["unsafe"], files["unknown"], files["folder"]],
        "no_args": [],
        "missing": [files["safe"], files["missing"]],
    }
    started = {name: subprocess.Popen([sys.executable, "manage.py", "scan_file", *args],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, args in commands.items()}
    done = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=180)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def test_it_exits_0_when_every_file_is_safe(runs):
    done = runs["all_safe"]
    assert done.returncode == 0, done.stderr
    assert "safe (torch-zip, 4 tensors, 212 parameters)" in done.stdout
    assert "2 file(s) scanned, 0 not safe" in done.stdout


def test_it_exits_1_when_any_file_is_unsafe_or_unknown(runs):
    assert runs["mixed_json"].returncode == 1


def test_it_exits_2_on_usage_errors(runs):
    assert runs["no_args"].returncode == 2
    assert "the following arguments are required: PATH" in runs["no_args"].stderr
    assert runs["missing"].returncode == 2
    assert "missing.pt: no such file or folder" in runs["missing"].stderr


def test_json_has_one_object_per_file_with_path_verdict_format_and_findings(runs, files):
    report = json.loads(runs["mixed_json"].stdout)
    first = report[:3]
    assert [r["path"] for r in first] == [files["safe"], files["unsafe"], files["unknown"]]
    assert [r["verdict"] for r in first] == ["safe", "unsafe", "unknown"]
    assert first[0]["findings"] == [] and first[0]["format"] == "torch-zip"
    finding = first[1]["findings"][0]
    assert finding["code"] == "dangerous-global" and finding["offset"] == 2
    assert finding["global_name"] == "os.system" and finding["severity"] == "unsafe"
    assert "imported at byte 2 of" in finding["message"]


def test_a_folder_stands_for_every_file_in_it(runs):
    report = json.loads(runs["mixed_json"].stdout)[3:]
    verdicts = {Path(r["path"]).name: r["verdict"] for r in report}
    assert verdicts["pytorch_model-00001-of-00002.bin"] == "safe"
    assert verdicts["pytorch_model-00002-of-00002.bin"] == "safe"
    assert verdicts["config.json"] == "unknown"  # not a model file: never called safe
