"""Reads of eval runs and results.

What a decision reads is `evidence()`: for each eval a policy names, the one run whose cache key
is the one planned from the policy's pinned parameters and packs (evaluations/planning.py).
Every other run of the same bytes is exploratory: shown, never counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet

from evaluations.models import EvalRun
from evaluations.planning import EvidenceSpec, RunPlan, plan_evidence

DRIFT = "drift_vs_parent"


def runs_for_digest(manifest_digest: str) -> QuerySet[EvalRun]:
    return EvalRun.objects.filter(manifest_digest=manifest_digest)


def latest_runs(manifest_digest: str) -> dict[str, EvalRun]:
    """The newest run of each eval for these bytes (any status, any parameters)."""
    latest: dict[str, EvalRun] = {}
    for run in runs_for_digest(manifest_digest).order_by("eval_name", "-created_at", "-id"):
        latest.setdefault(run.eval_name, run)
    return latest


@dataclass
class Evidence:
    """The runs a policy's decisions read for one checkpoint, and every other run of its bytes."""

    plans: dict[str, RunPlan | str]               # eval -> planned run, or why it cannot run
    runs: dict[str, EvalRun | None]               # eval -> the run with the planned key
    exploratory: list[EvalRun] = field(default_factory=list)
    parent_results: dict[str, dict] | None = None  # drift's parent, under the same evidence

    def results(self) -> dict[str, dict]:
        """{eval: {metric: value}} of the evidence runs that succeeded: what the policy engine
        reads. Failed, unfinished and missing evals are absent: "cannot rule out"."""
        results = {name: dict(run.metrics) for name, run in self.runs.items()
                   if run is not None and run.status == EvalRun.Status.SUCCEEDED}
        if DRIFT in results and self.parent_results is not None:
            # drift_vs_parent's deltas compare the results that exist now (its sibling evals
            # are usually still running when it is requested), both sides under this evidence.
            from evaluations.library.results import metric_deltas

            deltas, _ = metric_deltas(self.parent_results,
                                      {k: v for k, v in results.items() if k != DRIFT})
            results[DRIFT] = {k: v for k, v in results[DRIFT].items()
                              if not k.startswith("delta.")}
            results[DRIFT].update(deltas)
        return results

    def problems(self) -> dict[str, str]:
        """{eval: why it has no result, in words a person can act on}, for the gates."""
        problems = {}
        for name, plan in self.plans.items():
            run = self.runs.get(name)
            if isinstance(plan, str):
                problems[name] = f"it cannot run as the policy asks: {plan}"
            elif run is None:
                problems[name] = "it has not been requested for these bytes yet"
            elif run.status == EvalRun.Status.QUEUED:
                problems[name] = "it is queued"
            elif run.status == EvalRun.Status.RUNNING:
                problems[name] = f"it is running ({run.progress_percent}%)"
            elif run.status in (EvalRun.Status.FAILED, EvalRun.Status.ERRORED):
                problems[name] = f"it {run.status}: {run.error}"
        return problems

    def failures(self) -> dict[str, EvalRun]:
        """The evidence runs that ended failed or errored (nothing re-queues them)."""
        return {name: run for name, run in self.runs.items()
                if run is not None and run.can_retry}

    @property
    def pending(self) -> bool:
        return any(run is not None and not run.is_finished for run in self.runs.values())


def evidence(checkpoint, spec: EvidenceSpec, names: list[str] | None = None, *,
             with_parent: bool = True) -> Evidence:
    """The evidence `spec` names for `checkpoint` (default: every eval the spec covers)."""
    plans = plan_evidence(checkpoint, spec, names)
    keys = {plan.cache_key: name for name, plan in plans.items() if not isinstance(plan, str)}
    runs: dict[str, EvalRun | None] = dict.fromkeys(plans)
    exploratory = []
    for run in runs_for_digest(checkpoint.manifest_digest).order_by("eval_name", "-created_at"):
        if run.cache_key in keys:
            runs[keys[run.cache_key]] = run
        else:
            exploratory.append(run)
    parent_results = None
    drift = plans.get(DRIFT)
    if with_parent and not isinstance(drift, (str, type(None))) and drift.parent is not None:
        parent_results = evidence(drift.parent, spec, [n for n in plans if n != DRIFT],
                                  with_parent=False).results()
    return Evidence(plans=plans, runs=runs, exploratory=exploratory,
                    parent_results=parent_results)


def family_series(family_id: int, eval_name: str, metric: str,
                  spec: EvidenceSpec | None = None) -> list[tuple[str, float | None]]:
    """(checkpoint label, metric) across a family's checkpoints, oldest first, for plots: the
    newest succeeded run of each checkpoint's bytes that ran with the evidence's parameters and
    pack versions (any run, without `spec`), in two queries whatever the family's size."""
    from models.models import Checkpoint

    rule = (spec or {}).get(eval_name)
    checkpoints = list(Checkpoint.objects.filter(family_id=family_id).order_by("created_at", "id")
                       .values_list("label", "manifest_digest"))
    newest: dict[str, EvalRun] = {}
    for run in (EvalRun.objects.filter(manifest_digest__in={d for _, d in checkpoints},
                                       eval_name=eval_name, status=EvalRun.Status.SUCCEEDED)
                .order_by("-finished_at")):
        if rule is None or _ran_as(run, rule):
            newest.setdefault(run.manifest_digest, run)
    return [(label, newest[digest].metrics.get(metric) if digest in newest else None)
            for label, digest in checkpoints]


def _ran_as(run: EvalRun, rule) -> bool:
    packs = {ref["name"]: ref["sha256"] for ref in run.inputs.get("packs", [])}
    return run.params == rule.get("params") and packs == dict(rule.get("packs") or {})
