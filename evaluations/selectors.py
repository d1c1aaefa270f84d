"""Reads of eval runs and results."""

from __future__ import annotations

from django.db.models import QuerySet

from evaluations.models import EvalRun


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
    results: dict[str, dict] = {}
    for run in (runs_for_digest(manifest_digest).exclude(eval_name__in=exclude or [])
                .order_by("eval_name", "-created_at", "-id")):
        if run.eval_name not in results:
            results[run.eval_name] = (dict(run.metrics) if run.status == EvalRun.Status.SUCCEEDED
                                      else None)
    return {name: metrics for name, metrics in results.items() if metrics is not None}


def family_series(family_id: int, eval_name: str, metric: str) -> list[tuple[str, float | None]]:
    """(checkpoint label, metric) across a family's checkpoints, oldest first, for plots."""
    from models.models import Checkpoint

    points = []
    for checkpoint in Checkpoint.objects.filter(family_id=family_id).order_by("created_at", "id"):
        run = (EvalRun.objects.filter(manifest_digest=checkpoint.manifest_digest,
                                      eval_name=eval_name, status=EvalRun.Status.SUCCEEDED)
               .order_by("-finished_at").first())
        points.append((checkpoint.label, run.metrics.get(metric) if run else None))
    return points
