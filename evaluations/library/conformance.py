"""Does a result record conform to lm-evaluation-harness's own result schema?

The harness declares its results as a TypedDict (`lm_eval.result_schema.EvalResults`); this
validates a record against it with pydantic, as JSON would carry it. One part is checked
differently: the schema annotates `configs` as `{task: {key: str | bool | None}}`, narrower than
the configs the harness itself writes (its `metric_list` is a list, its `metadata` a mapping),
so each config is checked against the harness's `TaskConfig` instead: only its fields, one of
its four output types, and a metric list whose entries name a metric and an aggregation.

Imports lm_eval and pydantic: for the tests and the worker, never the web process.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

OUTPUT_TYPES = ("loglikelihood", "loglikelihood_rolling", "multiple_choice", "generate_until")


def schema_problems(record: Mapping[str, Any]) -> list[str]:
    """Every way the record departs from lm-eval's result schema, as `path: problem` lines
    (empty when it conforms). The `stagegate` key is an extension the schema ignores."""
    from lm_eval.result_schema import EvalResults
    from pydantic import TypeAdapter, ValidationError

    data = json.loads(json.dumps(record, allow_nan=False))
    configs = data.pop("configs", {})
    problems: list[str] = []
    try:
        TypeAdapter(EvalResults).validate_python(data)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg']}")
    for task, config in (configs or {}).items():
        problems += [f"configs.{task}.{p}" for p in task_config_problems(config)]
    for task in data.get("results", {}):
        if task not in (configs or {}):
            problems.append(f"configs: no config for task {task}")
    return problems


def task_config_problems(config: Any) -> list[str]:
    from lm_eval.api.task import TaskConfig

    if not isinstance(config, Mapping):
        return ["must be a mapping"]
    fields = {field.name for field in dataclasses.fields(TaskConfig)}
    problems = [f"{key}: not a field of lm-eval's TaskConfig" for key in config
                if key not in fields]
    if not isinstance(config.get("task"), str):
        problems.append("task: must be the task's name")
    if "output_type" in config and config["output_type"] not in OUTPUT_TYPES:
        problems.append(f"output_type: {config['output_type']!r} is not one of "
                        f"{', '.join(OUTPUT_TYPES)}")
    for index, entry in enumerate(config.get("metric_list") or []):
        if not (isinstance(entry, Mapping) and isinstance(entry.get("metric"), str)
                and isinstance(entry.get("aggregation", "mean"), str)):
            problems.append(f"metric_list[{index}]: must name a metric and its aggregation")
    return problems
