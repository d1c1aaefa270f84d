"""Which evals exist: the built-ins, and one eval per uploaded pack.

An uploaded pack is usable in policy like a built-in eval, under the pack's own name: a
`multiple_choice` pack runs mc_knowledge on it, `scored_text` runs heldout_lm, `prompt_pairs`
runs refusal_preference. Its results are stored under the pack's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluations.library.packs import Pack, builtin_pack_paths, load_builtin_pack, load_pack
from evaluations.library.registry import EvalSpec, all_evals, get_eval

EVAL_FOR_PACK_TYPE = {"multiple_choice": "mc_knowledge", "scored_text": "heldout_lm",
                      "prompt_pairs": "refusal_preference"}


class UnknownEval(LookupError):
    pass


@dataclass
class EvalEntry:
    """An eval as Stagegate offers it: a name, the library spec that runs it, fixed params."""

    name: str
    spec: EvalSpec
    fixed_params: dict = field(default_factory=dict)
    pack_id: int | None = None
    # A registered harness task: its row, and what identifies it in a cache key.
    task_id: int | None = None
    task_ref: dict | None = None

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def is_builtin(self) -> bool:
        return self.pack_id is None and self.task_id is None

    def direction(self, metric: str) -> bool | None:
        if self.task_ref is not None:
            return self.task_ref.get("metrics", {}).get(metric)
        return self.spec.direction(metric)

    @property
    def metric_names(self) -> list[str]:
        if self.task_ref is not None:
            return list(self.task_ref.get("metrics", {}))
        return list(self.spec.metrics) + list(self.spec.higher_is_better)


def task_entry(task) -> EvalEntry:
    """The eval a registered task is (evaluations.models.HarnessTask): lm-eval or Inspect."""
    from evaluations.library.harness_specs import INSPECT_TASK, LM_EVAL_TASK

    if task.kind == "inspect":
        from evaluations.library.inspect_tasks import inspect_version

        spec, framework = INSPECT_TASK, inspect_version()
    else:
        from evaluations.library.harness import harness_version

        spec, framework = LM_EVAL_TASK, harness_version()
    return EvalEntry(name=task.name, spec=spec, task_id=task.pk, task_ref={
        "name": task.name, "kind": task.kind, "sha256": task.sha256,
        "harness": framework, "metrics": dict(task.metrics)})


def task_entry_by_id(task_id: int) -> EvalEntry:
    from evaluations.models import HarnessTask

    return task_entry(HarnessTask.objects.get(pk=task_id))


def builtin_names() -> list[str]:
    return list(all_evals())


def lookup(name: str) -> EvalEntry:
    from evaluations.models import EvalPack

    from evaluations.models import HarnessTask

    if name in all_evals():
        return EvalEntry(name=name, spec=get_eval(name))
    task = HarnessTask.objects.filter(name=name).order_by("-created_at", "-id").first()
    if task is not None:
        return task_entry(task)
    pack = EvalPack.objects.filter(name=name).order_by("-created_at").first()
    if pack is None or pack.type not in EVAL_FOR_PACK_TYPE:
        known = ", ".join(builtin_names() + sorted(
            set(EvalPack.objects.values_list("name", flat=True))
            | set(HarnessTask.objects.values_list("name", flat=True))))
        raise UnknownEval(f"no eval named {name!r}; known: {known}")
    return EvalEntry(name=name, spec=get_eval(EVAL_FOR_PACK_TYPE[pack.type]),
                     fixed_params={"pack": name}, pack_id=pack.pk)


def lookup_version(name: str, sha256: str) -> EvalEntry:
    """A pack eval (or a harness task) at one exact version (the one a policy pins)."""
    from evaluations.models import EvalPack, HarnessTask

    task = HarnessTask.objects.filter(name=name, sha256=sha256).first()
    if task is not None:
        return task_entry(task)
    pack = EvalPack.objects.filter(name=name, sha256=sha256).first()
    if pack is None or pack.type not in EVAL_FOR_PACK_TYPE:
        raise UnknownEval(f"no version of pack {name!r} with sha256 {sha256[:12]}…; upload it, "
                          "or load a policy that pins the version you have")
    return EvalEntry(name=name, spec=get_eval(EVAL_FOR_PACK_TYPE[pack.type]),
                     fixed_params={"pack": name}, pack_id=pack.pk)


def load_named_pack(name: str) -> Pack:
    """A pack by name: the shipped one when there is one (an upload never stands in for the
    data a built-in eval is judged on), else the newest uploaded version."""
    from evaluations.models import EvalPack

    if name in builtin_pack_paths():
        return load_builtin_pack(name)
    uploaded = EvalPack.objects.filter(name=name).order_by("-created_at").first()
    if uploaded is None:
        raise KeyError(f"no pack named {name!r}")
    return load_pack(uploaded.content.encode())
