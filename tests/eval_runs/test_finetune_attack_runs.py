"""finetune_attack on real workers: reused on the same key like any run, and stopped by the
worker's time limit with a sentence that says what to change."""

from __future__ import annotations

import pytest
from django.test import override_settings

from evaluations import services
from evaluations.library.conformance import schema_problems
from evaluations.models import EvalRun
from tests.conftest import make_persona
from tests.eval_runs.conftest import submit_folder
from tests.evaluations import corpora
from tests.registry.test_tasks import wait_for

PARAMS = {"pack": "test-attack", "measure_pack": "test-refusal", "steps": 3, "every": 1}


def setup(family: str, tiny_model_dir):
    alice = make_persona("alice")
    for pack in (corpora.attack_pack(), corpora.refusal_pack()):
        services.add_eval_pack(actor=alice, data=pack)
    return alice, submit_folder(alice, tiny_model_dir, family=family)


@pytest.mark.django_db(transaction=True)
def test_an_attack_run_on_a_worker_is_stored_conforms_and_is_reused(celery_worker_process,
                                                                    tiny_model_dir):
    alice, checkpoint = setup("lab/attack", tiny_model_dir)
    [run] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                   eval_names=["finetune_attack"],
                                   params={"finetune_attack": PARAMS})
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_finished, timeout=180)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    assert set(run.metrics) == {"pre_attack", "post_attack", "steps_to_threshold", "crossed",
                                "drop"}
    assert run.result["n-samples"]["finetune_attack"]["effective"] == 4  # steps 0..3
    assert schema_problems(run.result) == []
    [again] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                     eval_names=["finetune_attack"],
                                     params={"finetune_attack": PARAMS})
    assert again.pk == run.pk
    assert EvalRun.objects.filter(eval_name="finetune_attack").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_attack_past_the_time_limit_is_stopped_and_says_so(start_worker, tiny_model_dir):
    limit = {"STAGEGATE_EVAL_TIME_LIMIT_SECONDS": "62"}  # the soft limit is a minute less
    start_worker("short", queues="evals", concurrency=1, extra_env=limit)
    alice, checkpoint = setup("lab/attack-long", tiny_model_dir)
    with override_settings(STAGEGATE_EVAL_TIME_LIMIT_SECONDS=62):
        [run] = services.request_evals(
            actor=alice, checkpoint=checkpoint, eval_names=["finetune_attack"],
            params={"finetune_attack": {**PARAMS, "steps": 10000, "every": 1}})
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_finished, timeout=180)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "errored"
    assert "exceeded its time limit of 62 s" in run.error


@pytest.mark.django_db(transaction=True)
def test_the_attack_goes_to_the_gpu_queue_when_there_are_gpu_workers(start_worker,
                                                                    tiny_model_dir):
    """With GPU workers declared, a model at least STAGEGATE_GPU_MIN_PARAMETERS large runs its
    finetune_attack on the `gpu` queue (here a worker that consumes only `gpu`, on the CPU, as a
    GPU machine without CUDA would); a smaller one, and every eval that does not prefer a GPU,
    stays on `evals`."""
    alice, checkpoint = setup("lab/attack-gpu", tiny_model_dir)
    assert checkpoint.parameters > 1000
    with override_settings(STAGEGATE_GPU_WORKERS=True,
                           STAGEGATE_GPU_MIN_PARAMETERS=checkpoint.parameters + 1):
        [small] = services.request_evals(
            actor=alice, checkpoint=checkpoint, eval_names=["finetune_attack", "heldout_lm"],
            params={"finetune_attack": {**PARAMS, "seed": 1}})[:1]
    assert small.queue == "evals"
    assert EvalRun.objects.get(checkpoint=checkpoint, eval_name="heldout_lm").queue == "evals"
    gpu = start_worker("gpu-only", queues="gpu", concurrency=1)
    with override_settings(STAGEGATE_GPU_WORKERS=True,
                           STAGEGATE_GPU_MIN_PARAMETERS=checkpoint.parameters):
        [run] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                       eval_names=["finetune_attack"],
                                       params={"finetune_attack": PARAMS})
    assert run.queue == "gpu"
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_finished, timeout=180)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    assert run.claimed_by.startswith(gpu.name + "@")
    assert EvalRun.objects.get(pk=small.pk).status == "queued"  # nobody consumes `evals` here
