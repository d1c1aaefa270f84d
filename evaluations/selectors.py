"""Reads of eval runs and results."""

from __future__ import annotations

from django.db.models import QuerySet

from evaluations.models import EvalRun


DRIFT = "drift_vs_parent"


def runs_for_digest(manifest_digest: str) -> QuerySet[EvalRun]:
    return EvalRun.objects.filter(manifest_digest=manifest_digest)


def latest_runs(manifest_digest: str) -> dict[str, EvalRun]:
    """The newest run of each eval for these bytes (any status)."""
    latest: dict[str, EvalRun] = {}
    for run in runs_for_digest(manifest_digest).order_by("eval_name", "-created_at", "-id"):
        latest.setdefault(run.eval_name, run)
    return latest


def flat_results(manifest_digest: str, *, exclude: list[str] | None = None) -> dict[str, dict]:
    """{eval: {metric: value}} from each eval's most recently requested run, if it succeeded;
    the policy engine reads this. The newest request reflects the current inputs (a canary
    added since makes a new run), so an older run that happened to finish later never stands
    in for it. Failed, unfinished or missing evals are absent: "cannot rule out"."""
    newest: dict[str, EvalRun] = {}
    for run in (runs_for_digest(manifest_digest).exclude(eval_name__in=exclude or [])
                .order_by("eval_name", "-created_at", "-id")):
        newest.setdefault(run.eval_name, run)
    results = {name: dict(run.metrics) for name, run in newest.items()
               if run.status == EvalRun.Status.SUCCEEDED}
    drift = newest.get(DRIFT)
    if DRIFT in results and drift.inputs.get("parent_manifest_digest"):
        # drift_vs_parent's deltas compare the results that exist now, not those of the moment
        # its run was requested (its sibling evals are usually still running then).
        from evaluations.library.results import metric_deltas

        parent = flat_results(drift.inputs["parent_manifest_digest"], exclude=[DRIFT])
        deltas, _ = metric_deltas(parent, {k: v for k, v in results.items() if k != DRIFT})
        results[DRIFT] = {k: v for k, v in results[DRIFT].items() if not k.startswith("delta.")}
        results[DRIFT].update(deltas)
    return results


def family_series(family_id: int, eval_name: str, metric: str) -> list[tuple[str, float | None]]:
    """(checkpoint label, metric) across a family's checkpoints, oldest first, for plots: the
    newest succeeded run of each checkpoint's bytes, in two queries whatever the family's size."""
    from models.models import Checkpoint

    checkpoints = list(Checkpoint.objects.filter(family_id=family_id).order_by("created_at", "id")
                       .values_list("label", "manifest_digest"))
    newest: dict[str, EvalRun] = {}
    for run in (EvalRun.objects.filter(manifest_digest__in={d for _, d in checkpoints},
                                       eval_name=eval_name, status=EvalRun.Status.SUCCEEDED)
                .order_by("-finished_at")):
        newest.setdefault(run.manifest_digest, run)
    return [(label, newest[digest].metrics.get(metric) if digest in newest else None)
            for label, digest in checkpoints]
