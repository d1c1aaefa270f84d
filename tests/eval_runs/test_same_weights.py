"""The same weights give the same numbers whichever way they were submitted."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from evaluations import runner, services
from evaluations.models import EvalRun
from models import scanning
from tests.eval_runs.conftest import submit_folder
from tests.eval_runs.test_runs import HELDOUT_PACK


@pytest.mark.django_db
def test_pytorch_and_safetensors_submissions_of_one_model_score_the_same(alice, tiny_model_dir,
                                                                         tmp_path):
    as_pickle = tmp_path / "as-pickle"
    shutil.copytree(tiny_model_dir, as_pickle)
    state = load_file(str(as_pickle / "model.safetensors"))
    (as_pickle / "model.safetensors").unlink()
    torch.save(state, as_pickle / "pytorch_model.bin")

    safetensors_checkpoint = submit_folder(alice, tiny_model_dir, family="lab/same", label="st")
    pickle_checkpoint = submit_folder(alice, as_pickle, family="lab/same", label="pt")
    pickle_checkpoint = scanning.scan_checkpoint(checkpoint_id=pickle_checkpoint.pk)
    assert pickle_checkpoint.status == "ready"

    services.add_eval_pack(actor=alice, data=HELDOUT_PACK.encode())
    metrics = []
    for checkpoint in (safetensors_checkpoint, pickle_checkpoint):
        run = services.request_evals(actor=alice, checkpoint=checkpoint,
                                     eval_names=["heldout-test"])[0]
        runner.execute_run(run_id=run.pk, worker="test")
        run = EvalRun.objects.get(pk=run.pk)
        assert run.status == "succeeded", run.error
        metrics.append(run.metrics)
    assert metrics[0]["bits_per_byte"] == pytest.approx(metrics[1]["bits_per_byte"], rel=1e-6)
