"""The specs under which registered tasks run: lm-evaluation-harness and Inspect (one spec per
kind of task;
the task's own bundle and the harness's version are in each run's cache key). Kept apart from
builtin/specs.py: adding a kind of eval does not change the built-ins' code hashes."""

from __future__ import annotations

from evaluations.library.registry import EvalSpec

LM_EVAL_TASK = EvalSpec(
    name="lm_eval_task",
    version=1,
    description="A lab's lm-evaluation-harness task, run by the harness on the local checkpoint.",
    module="evaluations.library.harness",
    metrics=(),
    higher_is_better={},
    params={"batch_size": 8, "num_fewshot": None, "limit": None, "bootstrap_iters": 1000},
)


INSPECT_TASK = EvalSpec(
    name="inspect_task",
    version=1,
    description="A lab's Inspect task, run by inspect-ai on the local checkpoint.",
    module="evaluations.library.inspect_tasks",
    metrics=(),
    higher_is_better={},
    params={"limit": None, "max_tokens": None, "seed": 0},
)
