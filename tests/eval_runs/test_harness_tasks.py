"""A lab's lm-evaluation-harness task, registered from files it wrote, runs on a real worker
through the harness itself, and gives the numbers the harness gives run directly on the same
model folder; its record conforms; it is usable and pinned in policy like a built-in."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluations import services
from evaluations.library.conformance import schema_problems
from evaluations.models import EvalRun, HarnessTask
from evaluations.planning import plan_run
from evaluations.selectors import evidence
from releases.policies_service import load_policy_version
from tests.conftest import make_persona
from tests.eval_runs.conftest import submit_folder
from tests.live import in_background
from tests.registry.test_tasks import wait_for

ROOT = Path(__file__).resolve().parents[2]
POLICY = """name: task-test
version: "1"
ceilings:
  max_parameters: 1e15
tiers:
  - name: low
stages:
  internal:
    audience: owners
    tiers:
      low:
        required_evals:
          - {eval: lab_counting, metric: acc_norm, min: 0.5}
"""

TASK = """task: lab_counting
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/test.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "The model number {{number}} reads the text and"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_task(folder: Path, rows: int = 8) -> tuple[Path, Path]:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "lab_counting.yaml").write_text(TASK)
    data = folder / "data" / "test.jsonl"
    data.write_text("".join(json.dumps({"number": i, "choices": ["writes it down again",
                                                                 "eats a green apple",
                                                                 "forgets everything"],
                                        "answer": i % 2}) + "\n" for i in range(rows)))
    return folder / "lab_counting.yaml", data


def harness_directly(model_dir: Path, task_dir: Path) -> Callable[[], object]:
    """lm_eval's own CLI entry point, in a fresh process, on the same folder and YAML, started
    now."""
    script = (
        "import json, os, sys\n"
        "os.environ['HF_DATASETS_OFFLINE'] = os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "import lm_eval\n"
        "from lm_eval.tasks import TaskManager\n"
        f"os.chdir({str(task_dir)!r})\n"
        f"tm = TaskManager(include_path={str(task_dir)!r}, include_defaults=False)\n"
        f"r = lm_eval.simple_evaluate(model='hf', model_args={{'pretrained': {str(model_dir)!r},"
        " 'dtype': 'float32'}, tasks=['lab_counting'], task_manager=tm, device='cpu',"
        " batch_size=8, bootstrap_iters=1000, verbosity='ERROR')\n"
        "print(json.dumps(r['results']['lab_counting'], default=str))\n")
    return in_background(script, cwd=task_dir)


@pytest.mark.django_db(transaction=True)
def test_a_registered_lm_eval_task_runs_on_a_worker_and_equals_the_harness_run_directly(
        celery_worker_process, tiny_model_dir, tmp_path):
    alice = make_persona("alice")
    task_file, data_file = write_task(tmp_path / "task")
    call_command("add_eval_task", str(task_file), str(data_file))
    task = HarnessTask.objects.get(name="lab_counting")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/harness")
    [run] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                   eval_names=["lab_counting"])
    started = harness_directly(tiny_model_dir, tmp_path / "task")
    wait_for(lambda: EvalRun.objects.get(pk=run.pk).is_finished, timeout=300)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    direct = started()
    assert run.metrics["acc"] == direct["acc,none"]
    assert run.metrics["acc_norm"] == direct["acc_norm,none"]
    scores = run.result["results"]["lab_counting"]
    assert scores["acc_stderr,none"] == pytest.approx(direct["acc_stderr,none"])
    assert scores["sample_len"] == 8
    assert schema_problems(run.result) == []
    assert run.result["stagegate"]["inputs"]["task"]["sha256"] == task.sha256
    assert run.result["stagegate"]["inputs"]["task"]["harness"] == "lm-eval 0.4.13"
    assert "lm_eval_results.json" in run.artifacts
    # Asked again, the same key: the same run.
    [again] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                     eval_names=["lab_counting"])
    assert again.pk == run.pk


@pytest.mark.django_db
def test_a_changed_data_file_is_a_new_version_and_a_new_cache_key(tiny_model_dir, tmp_path):
    alice = make_persona("alice")
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/harness-key")
    task_file, data_file = write_task(tmp_path / "a")
    first = services.add_harness_task(actor=alice, config=task_file.read_bytes(),
                                      files={"data/test.jsonl": data_file.read_bytes()})
    [before] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                      eval_names=["lab_counting"])
    version = load_policy_version(actor=None, source="task.yaml", text=POLICY)[0]
    assert version.evidence["lab_counting"]["packs"] == {"lab_counting": first.sha256}
    again = services.add_harness_task(actor=alice, config=task_file.read_bytes(),
                                      files={"data/test.jsonl": data_file.read_bytes()})
    assert again.pk == first.pk
    task_file, data_file = write_task(tmp_path / "b", rows=9)
    second = services.add_harness_task(actor=alice, config=task_file.read_bytes(),
                                       files={"data/test.jsonl": data_file.read_bytes()})
    assert second.sha256 != first.sha256
    # The newest version reads other data: another key.
    assert plan_run(checkpoint, "lab_counting").cache_key != before.cache_key
    # The policy pinned the version current when it was loaded, like a pack: asking for the
    # evidence asks for that run, and it is the one that counts.
    [after] = services.request_evals(actor=alice, checkpoint=checkpoint,
                                     eval_names=["lab_counting"])
    assert after.pk == before.pk
    counted = evidence(checkpoint, version.evidence_spec, ["lab_counting"]).runs["lab_counting"]
    assert counted.pk == before.pk


@pytest.mark.django_db
@pytest.mark.parametrize("change, message", [
    (("dataset_path: json", "dataset_path: allenai/ai2_arc"), "dataset_path: must be json"),
    (("doc_to_choice: choices", "doc_to_choice: !function utils.choices"),
     "custom Python (`!function`) is not accepted"),
    (("test: data/test.jsonl", "test: data/other.jsonl"), "data/other.jsonl was not uploaded"),
    (("task: lab_counting", "task: heldout_lm"), "the name of a built-in eval"),
])
def test_a_task_that_would_fetch_run_code_or_shadow_an_eval_is_refused(change, message,
                                                                       tmp_path):
    alice = make_persona("alice")
    task_file, data_file = write_task(tmp_path)
    config = task_file.read_text().replace(*change).encode()
    with pytest.raises(services.EvalRequestError, match=message.replace("(", r"\(")
                       .replace(")", r"\)")):
        services.add_harness_task(actor=alice, config=config,
                                  files={"data/test.jsonl": data_file.read_bytes()})
    assert not HarnessTask.objects.exists()


@pytest.mark.django_db
def test_the_command_refuses_a_data_file_outside_the_tasks_folder(tmp_path):
    task_file, _ = write_task(tmp_path / "task")
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("{}\n")
    with pytest.raises(CommandError, match="not inside the task's folder"):
        call_command("add_eval_task", str(task_file), str(outside))


def test_a_task_with_no_samples_fails_rather_than_scoring_zero():
    from evaluations.library.context import NothingToScore
    from evaluations.library.harness import output_from_results

    with pytest.raises(NothingToScore, match="yielded no samples"):
        output_from_results("lab_counting", {"results": {"lab_counting": {"acc,none": 0.0}},
                                             "samples": {"lab_counting": []}})


@pytest.mark.django_db
def test_a_task_registered_through_the_api_is_the_same_eval_as_from_the_command(
        api_client_for, tmp_path):
    """POST /api/v1/evals/tasks/ takes the task as `task` and each data file as a part named by
    its path: the same row (same sha256) as `add_eval_task`; mallory is refused and audited; a
    malformed upload is a 400 that says what to send, and nothing is registered."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from audit.models import AuditEvent

    alice, mallory = make_persona("alice"), make_persona("mallory")
    task_file, data_file = write_task(tmp_path / "task")

    def parts():
        return {"task": SimpleUploadedFile("lab_counting.yaml", task_file.read_bytes()),
                "data/test.jsonl": SimpleUploadedFile("test.jsonl", data_file.read_bytes())}

    refused = api_client_for(mallory).post("/api/v1/evals/tasks/", parts(), format="multipart")
    assert refused.status_code == 403 and "role" in refused.json()["detail"]
    assert [e.data["action"] for e in AuditEvent.objects.filter(
        verb="permission.denied", actor_username="mallory")] == ["task.add"]
    missing = api_client_for(alice).post("/api/v1/evals/tasks/",
                                         {"data/test.jsonl": parts()["data/test.jsonl"]},
                                         format="multipart")
    assert missing.status_code == 400 and "field `task`" in missing.json()["detail"]
    no_data = api_client_for(alice).post("/api/v1/evals/tasks/", {"task": parts()["task"]},
                                         format="multipart")
    assert no_data.status_code == 400 and "data/test.jsonl" in no_data.json()["detail"]
    assert not HarnessTask.objects.exists()

    made = api_client_for(alice).post("/api/v1/evals/tasks/", parts(), format="multipart")
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["name"] == "lab_counting" and body["files"] == ["data/test.jsonl"]
    call_command("add_eval_task", str(task_file), str(data_file))
    [row] = HarnessTask.objects.all()
    assert row.sha256 == body["sha256"]
    catalogue = api_client_for(alice).get("/api/v1/evals/").json()
    assert "lab_counting" in json.dumps(catalogue)
