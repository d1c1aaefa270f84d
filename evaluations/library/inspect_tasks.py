"""Inspect tasks (the UK AI Security Institute's `inspect-ai`) as Stagegate evals: a lab's task
file, with its dataset uploaded, run by Inspect itself (`inspect_ai.eval`, its Hugging Face
provider) on the checkpoint's materialised folder. Its EvalLog is the run's artifact; its scores
are the run's metrics (`accuracy`, or `<scorer>.<metric>` when a task has several scorers).

An Inspect task is Python, so it runs where it can do the least: in a child process of the
worker (evaluations/library/inspect_child.py, run by path: nothing of Stagegate on its import
path), in a private temporary folder holding only the task and its files, offline, with an
environment that carries none of the worker's settings (no database URL, broker, secret key or
cloud credentials), under the worker's memory limit and the run's time limit. It still runs
with the worker's file permissions, so registering one needs the safety role
(services.add_harness_task), and docs/evals.md says how to run the evals workers as a user
that cannot read the data dir.
A task that completes no sample fails, never "succeeds with 0".

Pure library code (no Django); imports inspect_ai only in the child.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from evaluations.library.context import EvalError, EvalInputError, EvalOutput, NothingToScore
from evaluations.library.harness import MAX_BUNDLE_BYTES, NAME_PATTERN, TaskBundle, _safe_path

TASK_FILE = "task.py"
# The only variables the child inherits: what Python and the C libraries need to run.
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def inspect_version() -> str:
    from importlib.metadata import version

    return f"inspect-ai {version('inspect_ai')}"


def parse_inspect_task(source: bytes, files: Mapping[str, bytes],
                       metrics: Mapping[str, bool | None]) -> TaskBundle:
    """Check an uploaded Inspect task file: UTF-8 Python with exactly one `@task` function (the
    eval's name), its dataset files inside the task's folder, and the metrics it reports (with
    their directions: Inspect does not say which way is better). Raise EvalInputError listing
    every problem."""
    problems: list[str] = []
    total = len(source) + sum(len(data) for data in files.values())
    if total > MAX_BUNDLE_BYTES:
        raise EvalInputError(f"the task and its files are {total} bytes; the limit is "
                             f"{MAX_BUNDLE_BYTES}")
    try:
        text = source.decode("utf-8")
        tree = ast.parse(text, filename=TASK_FILE)
    except UnicodeDecodeError:
        raise EvalInputError("the task file is not UTF-8 text") from None
    except SyntaxError as exc:
        raise EvalInputError(f"the task file is not valid Python (line {exc.lineno}: "
                             f"{exc.msg})") from None
    tasks = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
             and any(_is_task_decorator(d) for d in node.decorator_list)]
    if len(tasks) != 1:
        problems.append(f"the task file must define exactly one @task function (it defines "
                        f"{len(tasks)}): its name is the eval's name")
    elif not NAME_PATTERN.match(tasks[0]):
        problems.append(f"@task {tasks[0]}: the eval's name must be lowercase letters, digits "
                        "and _")
    decoded: dict[str, str] = {}
    for path, raw in files.items():
        safe = _safe_path(path)
        if safe is None or safe == TASK_FILE:
            problems.append(f"{path}: a data file needs a relative path inside the task's folder")
            continue
        try:
            decoded[safe] = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path}: data files must be UTF-8 text (JSON, JSON Lines or CSV)")
    if not files:
        problems.append("upload the task's dataset files (the task reads them by relative path)")
    if not metrics:
        problems.append("name the metrics the task reports, with which way is better "
                        "(e.g. accuracy=higher)")
    for metric in metrics:
        if not (isinstance(metric, str) and metric and all(
                part.replace("_", "a").isalnum() for part in metric.split("."))):
            problems.append(f"{metric!r}: a metric is named like accuracy or scorer.accuracy")
    if problems:
        raise EvalInputError("; ".join(problems))
    return TaskBundle(name=tasks[0], config=text, files=decoded, metrics=dict(metrics))


def _is_task_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return (isinstance(target, ast.Name) and target.id == "task") or (
        isinstance(target, ast.Attribute) and target.attr == "task")


def child_environment(root: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    env.update({"HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_HOME": str(root / "home" / "hf"), "INSPECT_LOG_DIR": str(root / "logs"),
                "INSPECT_DISPLAY": "none", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def run_inspect_task(bundle: TaskBundle, model_dir: Path, *, params: Mapping[str, Any],
                     device: str, timeout: float,
                     progress: Callable[[int, int], None] | None = None) -> EvalOutput:
    """Run the task with Inspect on the local model folder, in a child process (see the module
    docstring). The EvalLog (JSON) is kept as the artifact inspect_log.json."""
    from evaluations.library.lm import require_tokenizer

    require_tokenizer(Path(model_dir))
    if not any(Path(model_dir).glob("*.safetensors")):
        raise EvalInputError("Inspect tasks load safetensors weights only; convert the "
                             "checkpoint to safetensors first")
    with tempfile.TemporaryDirectory(prefix="stagegate-inspect-") as tmp:
        root = Path(tmp)
        work = root / "task"
        for folder in (work, root / "home", root / "tmp", root / "logs"):
            folder.mkdir(parents=True)
        (work / TASK_FILE).write_text(bundle.config, encoding="utf-8")
        for path, text in bundle.files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        request = {"task": TASK_FILE, "model_dir": str(model_dir),  # relative to its cwd
                   "device": device, "log_dir": str(root / "logs"),
                   "limit": params.get("limit"), "max_tokens": params.get("max_tokens"),
                   "seed": params.get("seed", 0)}
        if progress:
            progress(0, 1)
        try:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("inspect_child.py"))],
                input=json.dumps(request), capture_output=True, text=True, cwd=work,
                env=child_environment(root), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EvalError(f"the Inspect task ran longer than {timeout:.0f} s and was stopped; "
                            "lower its sample count (params.limit) or raise "
                            "STAGEGATE_EVAL_TIME_LIMIT_SECONDS") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise EvalError(f"the Inspect task failed: {last}")
        log_path = Path(json.loads(done.stdout.strip().splitlines()[-1])["log"])
        raw = log_path.read_bytes()
    return output_from_log(bundle, json.loads(raw), raw)


def output_from_log(bundle: TaskBundle, log: Mapping[str, Any], raw: bytes) -> EvalOutput:
    """The run's metrics, samples and artifact from an EvalLog (as JSON)."""
    if log.get("status") != "success":
        message = ((log.get("error") or {}).get("message") or log.get("status") or "").strip()
        raise EvalError(f"the Inspect task did not finish: {message.splitlines()[0][:300]}"
                        if message else "the Inspect task did not finish")
    results = log.get("results") or {}
    completed = results.get("completed_samples") or 0
    if not completed:
        raise NothingToScore(f"the Inspect task {bundle.name} completed no sample, so it "
                             "measured nothing; check that its dataset files hold samples")
    scores = results.get("scores") or []
    metrics: dict[str, float | None] = {}
    stderr: dict[str, float] = {}
    for score in scores:
        for name, metric in (score.get("metrics") or {}).items():
            key = name if len(scores) == 1 else f"{score['name']}.{name}"
            if name == "stderr":
                continue
            metrics[key] = _number(metric.get("value"))
            error = (score.get("metrics") or {}).get("stderr")
            if error is not None and _number(error.get("value")) is not None:
                stderr[key] = _number(error.get("value"))
    missing = sorted(set(bundle.metrics) - set(metrics))
    if missing:
        raise EvalError(f"the Inspect task reported {', '.join(sorted(metrics)) or 'no metric'}, "
                        f"not {', '.join(missing)} as registered; register it again with the "
                        "metrics it reports")
    rows = [{"id": sample.get("id"), "epoch": sample.get("epoch"),
             "target": sample.get("target"),
             "output": ((sample.get("output") or {}).get("completion") or "")[:2000],
             "scores": {name: s.get("value") for name, s in (sample.get("scores") or {}).items()}}
            for sample in log.get("samples") or []]
    return EvalOutput(
        metrics={k: v for k, v in metrics.items() if k in bundle.metrics},
        samples=json.loads(json.dumps(rows, default=str)), n_samples=completed, stderr=stderr,
        higher_is_better={k: v for k, v in bundle.metrics.items() if isinstance(v, bool)},
        runtime={"device": str((log.get("eval") or {}).get("model_args", {}).get("device", ""))},
        artifacts={"inspect_log.json": raw}, notes=[f"run by {inspect_version()}"])


def _number(value: Any) -> float | None:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
