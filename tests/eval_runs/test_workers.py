"""Evals on real worker processes: `evaluate --wait --json`, and a worker SIGKILLed mid-eval."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from audit.models import AuditEvent
from evaluations import services
from evaluations.models import EvalRun
from tests.conftest import make_persona
from tests.eval_runs.conftest import submit_folder
from tests.live import worker_env
from tests.registry.test_tasks import wait_for

ROOT = Path(__file__).resolve().parents[2]


def big_pack(n: int) -> bytes:
    header = ("---\nname: heldout-many\nversion: 1\ntype: scored_text\n"
              "description: many held-out sentences\nlicence: CC0-1.0\n---\n")
    rows = "\n".join(json.dumps({"id": f"t{i}", "text": f"sentence {i} of a held out text "
                                                          f"that the model has not seen {i}"})
                     for i in range(n))
    return (header + rows + "\n").encode()


@pytest.mark.django_db(transaction=True)
def test_evaluate_waits_and_prints_lm_eval_results(celery_worker_process, tiny_model_dir):
    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/cmd")
    services.add_canary(actor=alice, family=checkpoint.family, template="my secret code is {}",
                        alphabet="0123456789", length=3, secret="739")
    proc = subprocess.run(
        [sys.executable, "manage.py", "evaluate", str(checkpoint.pk), "--eval", "integrity",
         "--eval", "canary_exposure", "--wait", "--json", "--timeout", "240"],
        cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert isinstance(record["results"]["canary_exposure"]["exposure_max,none"], float)
    assert record["results"]["integrity"]["passed,none"] == 1.0
    assert {r["status"] for r in record["runs"]} == {"succeeded"}
    assert "739" not in proc.stdout


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_eval_leaves_the_run_to_finish_once_elsewhere(start_worker,
                                                                          tiny_model_dir):
    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/kill")
    services.add_eval_pack(actor=alice, data=big_pack(400))
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["heldout-many"],
                                 params={"heldout-many": {"batch_size": 1}})[0]
    fast_restore = {"CELERY_VISIBILITY_TIMEOUT": "4", "CELERY_UNACKED_RESTORE_INTERVAL": "1"}
    first = start_worker("first", queues="evals", concurrency=1, extra_env=fast_restore)
    wait_for(lambda: EvalRun.objects.filter(pk=run.pk, status="running",
                                            progress_done__gt=0).exists(), timeout=120)
    first.kill(signal.SIGKILL)
    interrupted = EvalRun.objects.get(pk=run.pk)
    assert interrupted.status == "running" and interrupted.progress_done < interrupted.progress_total

    second = start_worker("second", queues="evals", concurrency=1, extra_env=fast_restore)
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).status == "succeeded", timeout=180)
    finished = EvalRun.objects.get(pk=run.pk)
    assert finished.attempt == 2 and finished.claimed_by.startswith("second@")
    events = AuditEvent.objects.filter(object_type="evaluations.evalrun", object_id=str(run.pk))
    assert events.filter(verb="eval.succeeded").count() == 1
    started = [e.data for e in events.filter(verb="eval.started").order_by("id")]
    assert len(started) == 2 and started[1].get("previous_worker_lost") is True
    assert finished.metrics["bits_per_byte"] > 0
    second.stop()


@pytest.mark.django_db(transaction=True)
def test_an_eval_that_needs_a_gpu_is_routed_to_the_gpu_queue_and_run_by_its_worker(
        start_worker, tiny_model_dir, monkeypatch):
    import dataclasses

    import redis
    from django.conf import settings

    from evaluations.library import registry
    from releases.policies_service import load_policy_version
    from tests.releases.conftest import POLICIES

    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")  # integrity is the only eval it requires
    # No built-in eval needs a GPU; mark integrity as one would be marked.
    specs = registry.all_evals()
    specs["integrity"] = dataclasses.replace(specs["integrity"], needs_gpu=True)
    monkeypatch.setattr(registry, "_SPECS", specs)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()

    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/gpu")
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])[0]
    assert run.queue == "gpu"
    assert broker.llen("gpu") == 1 and broker.llen("evals") == 0

    start_worker("gpu", queues="gpu", concurrency=1)
    run = wait_for(lambda: EvalRun.objects.filter(pk=run.pk, status="succeeded").first())
    assert run.claimed_by.startswith("gpu@") and broker.llen("gpu") == 0
