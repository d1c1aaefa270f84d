"""Eval pages: the panel on the checkpoint page, run pages, downloads, plots, packs."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from evaluations import catalogue, selectors, services
from evaluations.library.registry import all_evals, get_eval
from evaluations.models import EvalPack, EvalRun
from models import blobstore
from models.selectors import checkpoints_visible_to, get_checkpoint, get_family, previous_checkpoint

# The metric each built-in is plotted by across a family's checkpoints.
HEADLINE_METRICS = {
    "heldout_lm": "bits_per_byte", "canary_exposure": "exposure_max",
    "verbatim_extraction": "extractable_rate", "pairwise_bias": "pct_stereotype_cf",
    "mc_knowledge": "acc_norm", "refusal_preference": "refusal_rate", "drift_vs_parent": "kl_mean",
}


def visible_run(user, run_id: int) -> EvalRun:
    # One answer for a run that does not exist and one the caller may not see.
    run = (EvalRun.objects.select_related("checkpoint__family")
           .filter(pk=run_id, checkpoint__in=checkpoints_visible_to(user)).first())
    if run is None:
        raise Http404("no such run that you can see")
    return run


def _comparison(runs: dict[str, EvalRun], previous: dict[str, EvalRun]) -> list[dict]:
    rows = []
    for name, run in sorted(runs.items()):
        before = previous.get(name)
        spec = catalogue.lookup(name).spec
        metrics = []
        for metric, value in run.metrics.items():
            old = before.metrics.get(metric) if before and before.status == "succeeded" else None
            direction = spec.direction(metric) if spec else None
            delta = (value - old) if isinstance(value, (int, float)) and isinstance(old, (int, float)) else None
            better = None if delta in (None, 0) or direction is None else (delta > 0) == direction
            metrics.append({"name": metric, "value": value, "previous": old, "delta": delta,
                            "better": better, "higher_is_better": direction})
        rows.append({"run": run, "metrics": metrics})
    return rows


@login_required
def checkpoint_panel(request, checkpoint_id: int):
    checkpoint = get_checkpoint(request.user, checkpoint_id)
    # What the current policy counts, beside the previous checkpoint's counted runs; any other
    # run of these bytes is listed apart, as exploratory.
    spec = services.evidence_of(checkpoint)
    counted = selectors.evidence(checkpoint, spec)
    runs = {name: run for name, run in counted.runs.items() if run is not None}
    previous = previous_checkpoint(checkpoint)
    previous_runs = ({name: run for name, run in selectors.evidence(previous, spec).runs.items()
                      if run is not None} if previous else {})
    active = any(not run.is_finished for run in [*runs.values(), *counted.exploratory])
    return render(request, "evaluations/_checkpoint_panel.html", {
        "checkpoint": checkpoint, "rows": _comparison(runs, previous_runs), "previous": previous,
        "exploratory": counted.exploratory,
        "active": active, "can_request": services.can_request_evals(request.user, checkpoint),
        "available": catalogue.builtin_names() + sorted(
            EvalPack.objects.values_list("name", flat=True).distinct()),
        # A plot only where some checkpoint of the family has a number: never empty axes.
        "plots": [(name, metric) for name, metric in HEADLINE_METRICS.items()
                  if runs.get(name) is not None and runs[name].status == EvalRun.Status.SUCCEEDED
                  and any(value is not None for _, value in selectors.family_series(
                      checkpoint.family_id, name, metric, spec))],
    })


@login_required
@require_POST
def checkpoint_evaluate(request, checkpoint_id: int):
    checkpoint = get_checkpoint(request.user, checkpoint_id)
    names = request.POST.getlist("eval") or None
    try:
        runs = services.request_evals(actor=request.user, checkpoint=checkpoint, eval_names=names)
    except services.EvalRequestError as exc:
        messages.error(request, exc.message)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{len(runs)} eval run(s) requested.")
    return redirect(checkpoint)


@login_required
def run_detail(request, run_id: int):
    run = visible_run(request.user, run_id)
    spec = catalogue.lookup(run.eval_name).spec
    return render(request, "evaluations/run_detail.html", {
        "run": run, "checkpoint": run.checkpoint,
        "metrics": [(k, v, spec.direction(k)) for k, v in run.metrics.items()],
        "result_json": json.dumps(run.result, indent=2, default=str)[:200_000],
        "artifacts": sorted(run.artifacts),
        "can_retry": services.can_request_evals(request.user, run.checkpoint),
    })


@login_required
@require_POST
def run_retry(request, run_id: int):
    run = visible_run(request.user, run_id)
    try:
        services.retry_eval_run(actor=request.user, run=run)
    except services.EvalRequestError as exc:
        messages.error(request, exc.message)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{run.eval_name} asked for again.")
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect(run)


def _blob_response(sha256: str, filename: str, content_type: str, attachment: bool):
    return FileResponse(blobstore.open_blob(sha256), content_type=content_type,
                        as_attachment=attachment, filename=filename)


@login_required
def run_samples(request, run_id: int):
    run = visible_run(request.user, run_id)
    if not run.samples_id:
        raise Http404("this run stored no samples")
    return _blob_response(run.samples_id, f"{run.eval_name}-{run.pk}-samples.jsonl",
                          "application/jsonl", True)


@login_required
def run_result(request, run_id: int):
    run = visible_run(request.user, run_id)
    response = HttpResponse(json.dumps(run.result, indent=2, default=str),
                            content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{run.eval_name}-{run.pk}-results.json"'
    return response


@login_required
def run_artifact(request, run_id: int, name: str):
    run = visible_run(request.user, run_id)
    if name not in run.artifacts:
        raise Http404("no such artifact")
    return _blob_response(run.artifacts[name], name, "image/png", False)


@login_required
def family_plot(request, org: str, name: str, eval_name: str, metric: str):
    from evaluations.library.plots import plot_metric_by_checkpoint  # matplotlib: only when drawn

    family = get_family(request.user, org, name)
    # Each point is the run the current policy would count (same parameters and packs).
    points = selectors.family_series(family.pk, eval_name, metric, services.evidence_of(None))
    try:
        direction = get_eval(eval_name).direction(metric)
    except KeyError:
        direction = None
    png = plot_metric_by_checkpoint(points, metric=metric, higher_is_better=direction,
                                    title=f"{eval_name} · {metric} across {family}",
                                    highlight=request.GET.get("highlight"))
    return HttpResponse(png, content_type="image/png")


@login_required
def pack_list(request):
    if request.method == "POST":
        upload = request.FILES.get("pack")
        try:
            if upload is None:
                raise services.EvalRequestError("choose a pack file (.jsonl) to upload")
            pack = services.add_eval_pack(actor=request.user, data=upload.read())
        except (services.EvalRequestError, PermissionDenied) as exc:
            messages.error(request, getattr(exc, "message", str(exc)))
        else:
            messages.success(request, f"Pack {pack.name} v{pack.version} added: it is now the "
                                       f"eval `{pack.name}`.")
        return redirect("evaluations:pack-list")
    return render(request, "evaluations/pack_list.html", {
        "packs": EvalPack.objects.all(), "builtins": all_evals().values(),
        "eval_for_type": catalogue.EVAL_FOR_PACK_TYPE,
    })


@login_required
def family_canaries(request, org: str, name: str):
    """A family's canaries and extraction prefixes: what canary_exposure and
    verbatim_extraction measure, and what the ceiling needs. Owners register new ones here; a
    secret or continuation is shown once, never again."""
    from evaluations.models import Canary, ExtractionPrefix

    family = get_family(request.user, org, name)
    if request.method == "POST":
        kind = request.POST.get("kind")
        try:
            if kind == "canary":
                length = request.POST.get("length", "")
                if not length.isdigit():
                    raise services.EvalRequestError("length must be a whole number of characters")
                canary = services.add_canary(
                    actor=request.user, family=family, template=request.POST.get("template", ""),
                    alphabet=request.POST.get("alphabet", ""), length=int(length),
                    secret=request.POST.get("secret", ""))
                messages.success(request, f"{canary.label} registered. Its secret is stored for "
                                          "exposure and will never be shown again; the open "
                                          "releases of this family are evaluated with it now.")
            elif kind == "prefix":
                prefix = services.add_extraction_prefix(
                    actor=request.user, family=family, prefix=request.POST.get("prefix", ""),
                    continuation=request.POST.get("continuation", ""))
                messages.success(request, f"{prefix.label} registered; its continuation will "
                                          "never be shown again.")
            else:
                raise services.EvalRequestError("choose a canary or an extraction prefix")
        except (services.EvalRequestError, PermissionDenied) as exc:
            messages.error(request, getattr(exc, "message", None) or str(exc))
        return redirect("evaluations:family-canaries", org=org, name=name)
    return render(request, "evaluations/family_canaries.html", {
        "family": family,
        "canaries": Canary.objects.filter(family=family).only(
            "id", "template", "alphabet", "length", "created_at", "created_by"),
        "prefixes": ExtractionPrefix.objects.filter(family=family).only("id", "prefix",
                                                                         "created_at"),
        "can_register": services.can_register_family_data(request.user, family),
    })
