from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import save

from evaluations import runner
from evaluations.models import EvalRun
from models import blobstore, services
from releases import clock, workflow
from tests.checkpoints import tensors

POLICIES = Path(__file__).resolve().parent / "policies"

ASSESSMENT = {"intended_use": "interpretability research",
              "training_data": "public-domain books",
              "known_hazards": "none beyond a small LM",
              "mitigations": "staged release"}


@pytest.fixture(autouse=True)
def reset_clock():
    clock.reset()
    yield
    clock.reset()


def submit_checkpoint(actor, label="v1", seed=0, family="lab/tiny"):
    staged = [blobstore.stage_chunks("model.safetensors", [save(tensors(seed))])]
    return services.submit_checkpoint(actor=actor, family_name=family, label=label, files=staged)


def run_pending_evals(release) -> None:
    """What a worker would do: run every queued eval of the release's bytes, then the
    eval-finished hook that moves the release on. Where a real worker is running too (and took
    some runs first), wait for it to finish them."""
    import time

    for run in EvalRun.objects.filter(manifest_digest=release.manifest_digest, status="queued"):
        runner.execute_run(run_id=run.pk, worker="test")
    deadline = time.monotonic() + 120
    while EvalRun.objects.filter(manifest_digest=release.manifest_digest,
                                 status__in=["queued", "running"]).exists():
        assert time.monotonic() < deadline, "eval runs did not finish"
        time.sleep(0.1)
    workflow.refresh_release(release_id=release.pk)
    release.refresh_from_db()


@pytest.fixture
def in_review(personas, simple_policy):
    """A release of alice's checkpoint, submitted, its evals run: approved for `internal`
    (the test policy needs no approval there), not yet published."""
    checkpoint = submit_checkpoint(personas.alice)
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    release.refresh_from_db()
    run_pending_evals(release)
    return release
