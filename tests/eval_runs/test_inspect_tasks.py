"""A lab's Inspect task, registered from files it wrote, runs on a real worker through
inspect-ai itself (its Hugging Face provider, on the local checkpoint, in a child process without
the worker's settings), and gives the scores Inspect gives run directly on the same folder; its
EvalLog is kept; only a safety reviewer may register code the workers run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from audit.models import AuditEvent
from evaluations import services
from evaluations.models import EvalRun, HarnessTask
from tests.conftest import TINY_TEXTS, make_persona
from tests.eval_runs.conftest import submit_folder
from tests.live import in_background
from tests.registry.test_tasks import wait_for

# A question-answer task: does the model continue the training sentence with its next word?
TASK = '''from inspect_ai import Task, task
from inspect_ai.dataset import json_dataset
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def lab_continue():
    return Task(dataset=json_dataset("data/samples.jsonl"), solver=[generate()],
                scorer=includes())
'''
SECRET_PROBE = '''import os
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def lab_env_probe():
    # Writes what it can see of the worker's settings into its own sample.
    seen = ",".join(sorted(k for k in os.environ if k in ("DATABASE_URL", "SECRET_KEY",
                                                         "CELERY_BROKER_URL", "AWS_SECRET_ACCESS_KEY",
                                                         "STAGEGATE_DATA_DIR")))
    return Task(dataset=[Sample(input="the model number 1", target=seen or "nothing")],
                solver=[generate()], scorer=includes())
'''


def write_task(folder: Path, source: str = TASK) -> tuple[Path, Path]:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    task = folder / "task.py"
    task.write_text(source)
    data = folder / "data" / "samples.jsonl"
    rows = [{"input": " ".join(text.split()[:4]), "target": text.split()[4], "id": str(i)}
            for i, text in enumerate(TINY_TEXTS[:6])]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return task, data


def inspect_directly(model_dir: Path, task_dir: Path, max_tokens: int) -> Callable[[], object]:
    """inspect_ai.eval in a fresh process on the same folder and task file, started now."""
    script = (
        "import json\n"
        "from inspect_ai import eval\n"
        f"log = eval('task.py', model='hf/local', model_args={{'model_path': {str(model_dir)!r},"
        " 'device': 'cpu', 'do_sample': False}, display='none', log_format='json',"
        f" max_tokens={max_tokens}, seed=0)[0]\n"
        "print(json.dumps({m: v.value for s in log.results.scores for m, v in s.metrics.items()}))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_LOG_DIR": str(task_dir / "logs")}
    return in_background(script, cwd=task_dir, env=env)


@pytest.mark.django_db(transaction=True)
def test_a_registered_inspect_task_runs_on_a_worker_and_equals_inspect_run_directly(
        celery_worker_process, tiny_model_dir, tmp_path):
    bob, alice = make_persona("bob"), make_persona("alice")
    task_file, data_file = write_task(tmp_path / "task")
    call_command("add_eval_task", "--kind", "inspect", str(task_file), str(data_file),
                 "--metric", "accuracy=higher")
    task = HarnessTask.objects.get(name="lab_continue")
    assert task.kind == "inspect" and task.metrics == {"accuracy": True}
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/inspect")
    [run] = services.request_evals(actor=bob, checkpoint=checkpoint, eval_names=["lab_continue"],
                                   params={"lab_continue": {"max_tokens": 4}})
    direct = inspect_directly(tiny_model_dir, tmp_path / "task", max_tokens=4)
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_finished, timeout=300)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    assert run.metrics["accuracy"] == direct()["accuracy"]
    assert "inspect_log.json" in run.artifacts
    assert run.result["stagegate"]["inputs"]["task"]["harness"].startswith("inspect-ai ")
    [again] = services.request_evals(actor=bob, checkpoint=checkpoint,
                                     eval_names=["lab_continue"],
                                     params={"lab_continue": {"max_tokens": 4}})
    assert again.pk == run.pk


@pytest.mark.django_db(transaction=True)
def test_an_inspect_task_sees_none_of_the_workers_settings(celery_worker_process,
                                                           tiny_model_dir, tmp_path):
    bob = make_persona("bob")
    task_file, data_file = write_task(tmp_path / "probe", SECRET_PROBE)
    services.add_harness_task(actor=bob, config=task_file.read_bytes(),
                              files={"data/samples.jsonl": data_file.read_bytes()},
                              kind="inspect", metrics={"accuracy": True})
    checkpoint = submit_folder(make_persona("alice"), tiny_model_dir, family="lab/inspect-env")
    [run] = services.request_evals(actor=bob, checkpoint=checkpoint,
                                   eval_names=["lab_env_probe"],
                                   params={"lab_env_probe": {"max_tokens": 2}})
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_finished, timeout=300)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    from models import blobstore

    with blobstore.open_blob(run.samples_id) as stream:
        rows = [json.loads(line) for line in stream.read().splitlines()]
    assert rows[0]["target"] == "nothing", rows[0]


@pytest.mark.django_db
def test_only_a_safety_reviewer_registers_an_inspect_task_and_refusals_are_audited(tmp_path):
    alice, bob = make_persona("alice"), make_persona("bob")
    task_file, data_file = write_task(tmp_path / "task")
    files = {"data/samples.jsonl": data_file.read_bytes()}
    with pytest.raises(PermissionDenied, match="code the workers run"):
        services.add_harness_task(actor=alice, config=task_file.read_bytes(), files=files,
                                  kind="inspect", metrics={"accuracy": True})
    assert AuditEvent.objects.filter(verb="permission.denied", actor=alice).exists()
    with pytest.raises(services.EvalRequestError, match="exactly one @task function"):
        services.add_harness_task(actor=bob, config=b"x = 1\n", files=files, kind="inspect",
                                  metrics={"accuracy": True})
    with pytest.raises(services.EvalRequestError, match="name the metrics"):
        services.add_harness_task(actor=bob, config=task_file.read_bytes(), files=files,
                                  kind="inspect")
    with pytest.raises(services.EvalRequestError, match="not valid Python"):
        services.add_harness_task(actor=bob, config=b"def (:\n", files=files, kind="inspect",
                                  metrics={"accuracy": True})
    task = services.add_harness_task(actor=bob, config=task_file.read_bytes(), files=files,
                                     kind="inspect", metrics={"accuracy": True})
    assert services.add_harness_task(actor=bob, config=task_file.read_bytes(), files=files,
                                     kind="inspect", metrics={"accuracy": True}) == task
    assert AuditEvent.objects.filter(verb="task.added").count() == 1
