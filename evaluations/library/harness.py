"""lm-evaluation-harness tasks as Stagegate evals: a lab's YAML task, with its data files
uploaded, run by the harness itself (`lm_eval.simple_evaluate`, its `hf` model class) on the
checkpoint's materialised folder. Nothing is reimplemented: the metrics are the harness's.

Offline and closed: the dataset is `dataset_path: json` over the uploaded files only (written
to a private folder and named by absolute path), the Hub and datasets libraries are offline,
the model loads from local files with no remote code, and a YAML that asks for custom Python
(`!function`) or a dataset from a hub is refused when it is registered. A task that yields no
samples fails, never "succeeds with 0".

Pure library code (no Django); imports lm_eval only to validate or run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

import yaml

from evaluations.library.context import EvalInputError, EvalOutput, NothingToScore

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OUTPUT_TYPES = ("loglikelihood", "loglikelihood_rolling", "multiple_choice", "generate_until")
MAX_BUNDLE_BYTES = 20 * 1024 * 1024
# Keys that would make the harness fetch or run something that is not in the bundle.
REFUSED_KEYS = {"include": "an `include:` of another YAML (paste the keys into this task)",
                "custom_dataset": "a custom dataset function",
                "dataset_name": "a named dataset configuration from a hub (use dataset_path: "
                                "json with uploaded files)"}


def harness_version() -> str:
    from importlib.metadata import version

    return f"lm-eval {version('lm_eval')}"


@dataclass(frozen=True)
class TaskBundle:
    """A task's YAML and its data files (relative path -> text), and their joint identity."""

    name: str
    config: str
    files: Mapping[str, str]
    metrics: Mapping[str, bool | None] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return bundle_sha256(self.config, self.files)


def bundle_sha256(config: str, files: Mapping[str, str]) -> str:
    payload = json.dumps({"config": config, "files": dict(sorted(files.items()))},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _safe_path(path: str) -> str | None:
    relative = PurePosixPath(path)
    if not path or relative.is_absolute() or ".." in relative.parts or "\\" in path:
        return None
    return relative.as_posix()


def parse_lm_eval_task(config: bytes, files: Mapping[str, bytes]) -> TaskBundle:
    """Check an uploaded lm-eval task; raise EvalInputError listing every problem."""
    problems: list[str] = []
    total = len(config) + sum(len(data) for data in files.values())
    if total > MAX_BUNDLE_BYTES:
        raise EvalInputError(f"the task and its files are {total} bytes; the limit is "
                             f"{MAX_BUNDLE_BYTES}")
    try:
        text = config.decode("utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise EvalInputError("the task YAML is not UTF-8 text") from None
    except yaml.constructor.ConstructorError as exc:
        raise EvalInputError(f"the task YAML uses a tag Stagegate does not run "
                             f"({exc.problem}); custom Python (`!function`) is not accepted: "
                             "use the harness's built-in metrics, filters and templates") from None
    except yaml.YAMLError as exc:
        raise EvalInputError(f"the task YAML is not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise EvalInputError("the task YAML must be a mapping (task: ..., dataset_path: ...)")
    name = data.get("task")
    if not (isinstance(name, str) and NAME_PATTERN.match(name)):
        problems.append("task: must be the eval's name, lowercase letters, digits and _")
    for key, why in REFUSED_KEYS.items():
        if key in data:
            problems.append(f"{key}: {why} is not accepted")
    if data.get("dataset_path") != "json":
        problems.append("dataset_path: must be json, read from the uploaded data files "
                        "(nothing is downloaded)")
    output_type = data.get("output_type", "generate_until")
    if output_type not in OUTPUT_TYPES:
        problems.append(f"output_type: must be one of {', '.join(OUTPUT_TYPES)}")
    decoded: dict[str, str] = {}
    for path, raw in files.items():
        safe = _safe_path(path)
        if safe is None:
            problems.append(f"{path}: a data file needs a relative path inside the task")
            continue
        try:
            decoded[safe] = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path}: data files must be UTF-8 text (JSON or JSON Lines)")
    named = data_files_of(data)
    if not named:
        problems.append("dataset_kwargs.data_files: name the uploaded files, e.g. "
                        "{test: data.jsonl}")
    for path in named:
        if _safe_path(path) not in decoded:
            problems.append(f"dataset_kwargs.data_files: {path} was not uploaded")
    unused = sorted(set(decoded) - {_safe_path(p) for p in named})
    if unused:
        problems.append(f"{', '.join(unused)}: uploaded but not named in data_files")
    metrics: dict[str, bool | None] = {}
    for index, entry in enumerate(data.get("metric_list") or []):
        metric = entry.get("metric") if isinstance(entry, dict) else None
        if not (isinstance(metric, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", metric)):
            problems.append(f"metric_list[{index}].metric: must be a built-in metric's name")
            continue
        better = entry.get("higher_is_better")
        metrics[metric] = better if isinstance(better, bool) else None
    if not metrics:
        problems.append("metric_list: list the metrics the task reports (policy names them)")
    if problems:
        raise EvalInputError("; ".join(problems))
    return TaskBundle(name=name, config=text, files=decoded, metrics=metrics)


def data_files_of(data: Mapping[str, Any]) -> list[str]:
    files = (data.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, str):
        return [files]
    if isinstance(files, list):
        return [f for f in files if isinstance(f, str)]
    if isinstance(files, dict):
        out: list[str] = []
        for value in files.values():
            out += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
        return out
    return []


def _absolute(files: Any, root: Path) -> Any:
    if isinstance(files, str):
        return str(root / files)
    if isinstance(files, list):
        return [str(root / f) for f in files]
    return {split: _absolute(value, root) for split, value in files.items()}


def offline() -> None:
    """Nothing the harness runs may reach a hub (set before datasets is imported)."""
    for variable in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[variable] = "1"


def metric_name(key: str) -> str | None:
    """The policy's name for a harness result key: `acc,none` -> acc, `exact_match,strict-match`
    -> exact_match.strict_match; None for stderr and the task's fixed keys."""
    if "," not in key:
        return None
    metric, filter_name = key.split(",", 1)
    if metric.endswith("_stderr"):
        return None
    if filter_name == "none":
        return metric
    return f"{metric}.{re.sub(r'[^A-Za-z0-9_]', '_', filter_name)}"


def run_lm_eval_task(bundle: TaskBundle, model_dir: Path, *, params: Mapping[str, Any],
                     device: str, dtype: str,
                     progress: Callable[[int, int], None] | None = None) -> EvalOutput:
    """Run the task with the harness on the local model folder; the harness's own results
    JSON is kept as an artifact (lm_eval_results.json)."""
    from evaluations.library.lm import require_tokenizer

    offline()
    require_tokenizer(Path(model_dir))
    if not any(Path(model_dir).glob("*.safetensors")):
        raise EvalInputError("lm-evaluation-harness tasks load safetensors weights only; "
                             "convert the checkpoint to safetensors first")
    import lm_eval

    config = yaml.safe_load(bundle.config)
    with tempfile.TemporaryDirectory(prefix="stagegate-lmeval-") as tmp:
        root = Path(tmp) / "data"
        for path, text in bundle.files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        kwargs = dict(config.get("dataset_kwargs") or {})
        kwargs["data_files"] = _absolute(kwargs["data_files"], root)
        kwargs["cache_dir"] = str(Path(tmp) / "datasets-cache")
        config["dataset_kwargs"] = kwargs
        if progress:
            progress(0, 1)
        results = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": str(model_dir), "dtype": dtype,
                                    "trust_remote_code": False},
            tasks=[config], device=device, batch_size=params.get("batch_size") or 1,
            num_fewshot=params.get("num_fewshot"), limit=params.get("limit"),
            bootstrap_iters=params.get("bootstrap_iters", 100000), log_samples=True,
            random_seed=0, numpy_random_seed=1234, torch_random_seed=1234,
            fewshot_random_seed=1234, verbosity="ERROR")
    if results is None:
        raise NothingToScore(f"lm-evaluation-harness returned no results for {bundle.name}")
    return output_from_results(bundle.name, results)


def output_from_results(name: str, results: Mapping[str, Any]) -> EvalOutput:
    samples = list((results.get("samples") or {}).get(name) or [])
    scores = (results.get("results") or {}).get(name) or {}
    if not samples:
        raise NothingToScore(f"the task {name} yielded no samples, so it measured nothing; "
                             "check that its data files hold rows for its test split")
    metrics: dict[str, float | None] = {}
    stderr: dict[str, float] = {}
    for key, value in scores.items():
        metric = metric_name(key)
        if metric is not None:
            metrics[metric] = _number(value)
            error = _number(scores.get(key.replace(",", "_stderr,", 1)))
            if error is not None:
                stderr[metric] = error
    directions = {metric_name(f"{m},none"): bool(b)
                  for m, b in ((results.get("higher_is_better") or {}).get(name) or {}).items()
                  if isinstance(b, bool)}
    record = {k: v for k, v in results.items() if k != "samples"}
    rows = [json.loads(json.dumps(row, default=str)) for row in samples]
    return EvalOutput(
        metrics=metrics, samples=rows, n_samples=len(rows), stderr=stderr,
        higher_is_better={k: v for k, v in directions.items() if k in metrics},
        runtime={"device": str((results.get("config") or {}).get("device") or ""),
                 "dtype": str((results.get("config") or {}).get("model_dtype") or "")
                 .removeprefix("torch.")},
        artifacts={"lm_eval_results.json": json.dumps(record, indent=2, default=str).encode()},
        notes=[f"run by {harness_version()}"])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
