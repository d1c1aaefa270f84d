"""The reconciler and eval runs: the only `evals` worker SIGKILLed mid-run, another started,
the reconciler re-queues the run once, and it finishes exactly once (issue 17)."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent
from config.reconciler import reconcile_left_behind
from evaluations import services
from evaluations.models import EvalRun
from evaluations.reconcile import reconcile_eval_runs
from tests.conftest import make_persona
from tests.eval_runs.conftest import submit_folder
from tests.eval_runs.test_workers import big_pack
from tests.registry.test_tasks import wait_for


def run_events(run: EvalRun):
    return AuditEvent.objects.filter(object_type="evaluations.evalrun",
                                     object_id=str(run.pk)).order_by("id")


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_only_worker_was_killed_is_requeued_once_and_finishes_once(start_worker,
                                                                              tiny_model_dir):
    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/reconcile")
    services.add_eval_pack(actor=alice, data=big_pack(200))
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["heldout-many"],
                                 params={"heldout-many": {"batch_size": 1}})[0]
    # The broker's own redelivery waits for the visibility timeout (hours, above the longest
    # eval): within this test only the reconciler can bring the run back.
    first = start_worker("first", queues="evals", concurrency=1)
    wait_for(lambda: EvalRun.objects.filter(pk=run.pk, status="running",
                                            progress_done__gt=0).exists(), timeout=120)
    first.kill(signal.SIGKILL)
    assert reconcile_eval_runs() == {"requeued": 0, "errored": 0}  # its heartbeat is fresh yet

    second = start_worker("second", queues="evals", concurrency=1)
    # Polls the reconciler itself: it does nothing until the heartbeat is stale, then
    # re-queues the run; the pass right after it finds nothing left to do.
    wait_for(lambda: reconcile_eval_runs()["requeued"] == 1, timeout=60, interval=0.5)
    assert reconcile_left_behind()["eval_runs"] == {"requeued": 0, "errored": 0}

    wait_for(lambda: EvalRun.objects.get(pk=run.pk).status == "succeeded", timeout=180)
    finished = EvalRun.objects.get(pk=run.pk)
    assert finished.attempt == 2 and finished.claimed_by.startswith("second@")
    assert finished.requeued_attempt == 1 and finished.metrics["bits_per_byte"] > 0
    verbs = [e.verb for e in run_events(run)]
    assert verbs == ["eval.requested", "eval.started", "eval.requeued", "eval.started",
                     "eval.succeeded"], verbs
    requeued = run_events(run).get(verb="eval.requeued").data
    assert requeued["attempt"] == 1 and requeued["worker"].startswith("first@")
    assert "stopped sending a heartbeat" in requeued["reason"]
    assert reconcile_eval_runs() == {"requeued": 0, "errored": 0}
    second.stop()


@pytest.mark.django_db(transaction=True)
def test_a_lost_run_that_used_its_attempts_is_errored_with_the_reason(tiny_model_dir):
    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/reconcile-spent")
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])[0]
    # As the claims of STAGEGATE_EVAL_MAX_ATTEMPTS workers, each lost, leave it.
    stale = timezone.now() - timedelta(seconds=settings.STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS + 1)
    EvalRun.objects.filter(pk=run.pk).update(
        status="running", attempt=settings.STAGEGATE_EVAL_MAX_ATTEMPTS, claimed_by="gone@host",
        heartbeat_at=stale)

    assert reconcile_eval_runs() == {"requeued": 0, "errored": 1}
    assert reconcile_eval_runs() == {"requeued": 0, "errored": 0}
    run.refresh_from_db()
    assert run.status == "errored"
    assert run.error.startswith(f"gave up after {settings.STAGEGATE_EVAL_MAX_ATTEMPTS} attempts: "
                                "its worker (gone@host) stopped sending a heartbeat")
    assert "STAGEGATE_EVAL_MAX_ATTEMPTS" in run.error
    assert run_events(run).filter(verb="eval.errored").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_queued_run_whose_message_was_lost_is_requeued_once(celery_worker_process,
                                                              tiny_model_dir):
    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/reconcile-lost")
    run = EvalRun.objects.get(pk=services.request_evals(
        actor=alice, checkpoint=checkpoint, eval_names=["integrity"])[0].pk)
    wait_for(lambda: EvalRun.objects.filter(pk=run.pk, status="succeeded").exists())
    # The same state once more, as if the broker had lost its message long ago: queued, never
    # claimed, for longer than the reconciler waits.
    long_ago = timezone.now() - timedelta(seconds=settings.STAGEGATE_RECONCILE_AFTER_SECONDS + 1)
    EvalRun.objects.filter(pk=run.pk).update(status="queued", attempt=0, heartbeat_at=None,
                                             claimed_by="", finished_at=None, created_at=long_ago)
    assert reconcile_eval_runs() == {"requeued": 1, "errored": 0}
    assert reconcile_eval_runs() == {"requeued": 0, "errored": 0}
    wait_for(lambda: EvalRun.objects.filter(pk=run.pk, status="succeeded").exists())
    assert run_events(run).filter(verb="eval.requeued").count() == 1
