"""Release pages: queue, release page with gates and timeline, and the action forms."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import user_roles
from config.listing import page_of, query_without_page, search
from audit.models import AuditEvent
from models.diff import checkpoint_diff
from models.scanning import scan_reports
from models.selectors import get_checkpoint, previous_checkpoint
from models.services import can_submit_to
from releases import selectors, workflow
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import Release
from releases.standing import ASSESSMENT_FIELDS, NOOP, release_standing


def _act(request, release, fn, success: str, *, action: str | None = None, **kwargs):
    verdict = (release_standing(release, request.user).verdict(action, stage=kwargs.get("stage"))
               if action else None)
    if verdict is not None and verdict.refusal == NOOP:
        messages.info(request, verdict.reason[:1].upper() + verdict.reason[1:] + ".")
        return redirect("releases:release-detail", release.pk)
    try:
        fn(actor=request.user, release=release, **kwargs)
    except (TransitionNotAllowed, ReleaseInputError, PermissionDenied) as exc:
        messages.error(request, getattr(exc, "reason", None) or str(exc))
    else:
        messages.success(request, success)
    return redirect("releases:release-detail", release.pk)


@login_required
def release_list(request):
    releases = selectors.releases_visible_to(request.user)
    status = request.GET.get("status", "")
    if status in Release.Status.values:
        releases = releases.filter(status=status)
    mine = request.GET.get("mine") == "1"
    if mine:
        releases = releases.filter(submitted_by=request.user)
    releases = search(releases, request.GET.get("q", ""), "checkpoint__family__org",
                      "checkpoint__family__name", "checkpoint__label")
    page = page_of(request, releases)
    return render(request, "releases/release_list.html", {
        "releases": page, "page": page, "query": query_without_page(request),
        "statuses": Release.Status.choices, "status": status, "mine": mine,
        "q": request.GET.get("q", ""),
        "keep": [(k, v) for k, v in (("status", status), ("mine", "1" if mine else "")) if v]})


@login_required
def review_queue(request):
    waiting = search(selectors.review_queue(request.user), request.GET.get("q", ""),
                     "checkpoint__family__org", "checkpoint__family__name", "checkpoint__label")
    page = page_of(request, waiting)
    return render(request, "releases/review_queue.html", {
        "releases": page, "page": page, "query": query_without_page(request),
        "q": request.GET.get("q", ""), "roles": sorted(user_roles(request.user))})


@login_required
def release_detail(request, release_id: int):
    """The release page: everything a reviewer needs, from one standing. With `?live=1` (the
    page's own htmx poll) only its sections, swapped in place, while anything can still move."""
    release = selectors.get_release(request.user, release_id)
    checkpoint = release.checkpoint
    standing = release_standing(release, request.user)
    reviews = list(release.reviews.select_related("reviewer", "policy_version"))
    # The newest 200 events; the audit page (linked) has them all.
    timeline = list(AuditEvent.objects.filter(object_type="releases.release",
                                              object_id=str(release.pk)).order_by("-id")[:200])[::-1]
    evidence = standing.evidence
    table = selectors.evidence_table(standing)
    table["any_plotted"] = any(row["plotted"] for row in table["rows"])
    live = request.GET.get("live") == "1"
    previous = None if live else previous_checkpoint(checkpoint)
    context = {
        "release": release, "checkpoint": checkpoint, "standing": standing,
        "stage": standing.stage, "gates": standing.gates, "gates_pass": standing.all_pass,
        "tier": standing.tier, "ladder": release.policy_version.policy.stage_names,
        "actions": standing.actions,
        "review_rows": [(r, standing.review_note(r)) for r in reviews],
        "timeline": timeline,
        "runs": [(name, run) for name, run in sorted(evidence.runs.items())],
        "table": table, "exploratory": evidence.exploratory,
        "failed_evals": standing.failed_evals,
        "assessment": [(key, label, release.assessment.get(key, "")) for key, label in
                       ASSESSMENT_FIELDS.items()],
        "is_submitter": request.user.pk == release.submitted_by_id,
        "can_review": workflow.can_review(request.user, release),
        "fields": ASSESSMENT_FIELDS,
        # Poll fast while evals run, slowly while decisions are pending, not at all after.
        "live_every": (3 if evidence.pending or release.status in ("submitted", "evaluating")
                       else 15 if release.status in ("in_review", "approved", "published")
                       else None),
    }
    if live:
        return render(request, "releases/release/_live_response.html", context)
    context.update(scan=scan_reports(checkpoint),
                   diff=checkpoint_diff(previous, checkpoint) if previous else None)
    return render(request, "releases/release_detail.html", context)


@login_required
def release_plot(request, release_id: int, eval_name: str, metric: str):
    """The metric across the family (the release policy's evidence for each checkpoint), this
    checkpoint and the previous approved one ringed, the policy's threshold drawn."""
    from django.http import Http404, HttpResponse

    from evaluations.catalogue import UnknownEval, lookup
    from evaluations.library.plots import plot_metric_by_checkpoint  # matplotlib: when drawn
    from evaluations.selectors import family_series
    from releases.hooks import previous_released_checkpoint

    release = selectors.get_release(request.user, release_id)
    standing = release_standing(release, request.user)
    thresholds = [t for t in (list(standing.policy.ceiling.capability_evals)
                              + list(standing.rule().required_evals if standing.stage else []))
                  if (t.eval, t.metric) == (eval_name, metric)]
    if not thresholds:
        raise Http404("the policy sets no threshold on that metric for this release")
    threshold = thresholds[0]
    points = family_series(release.checkpoint.family_id, eval_name, metric,
                           release.policy_version.evidence_spec)
    previous = previous_released_checkpoint(release.checkpoint)
    try:
        direction = lookup(eval_name).spec.direction(metric)
    except UnknownEval:
        direction = None
    png = plot_metric_by_checkpoint(
        points, metric=metric, higher_is_better=direction,
        title=f"{eval_name} · {metric} across {release.checkpoint.family}",
        highlight=release.checkpoint.label, previous=previous.label if previous else None,
        threshold=threshold.limit, threshold_label=f"policy: {threshold.bound} {threshold.limit:g}")
    return HttpResponse(png, content_type="image/png")


@login_required
def release_create(request, checkpoint_id: int):
    checkpoint = get_checkpoint(request.user, checkpoint_id)
    if request.method == "POST":
        assessment = {key: request.POST.get(key, "") for key in ASSESSMENT_FIELDS}
        try:
            release = workflow.create_release(actor=request.user, checkpoint=checkpoint,
                                              assessment=assessment)
            if request.POST.get("submit_now"):
                workflow.submit_release(actor=request.user, release=release)
        except (TransitionNotAllowed, ReleaseInputError, PermissionDenied) as exc:
            messages.error(request, getattr(exc, "reason", None) or str(exc))
            return render(request, "releases/release_form.html", {
                "checkpoint": checkpoint, "fields": ASSESSMENT_FIELDS, "values": assessment})
        return redirect(release)
    return render(request, "releases/release_form.html", {
        "checkpoint": checkpoint, "fields": ASSESSMENT_FIELDS, "values": {}})


@login_required
@require_POST
def release_update(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    assessment = {key: request.POST.get(key, "") for key in ASSESSMENT_FIELDS if key in request.POST}
    return _act(request, release, workflow.update_release, "Release updated.",
                assessment=assessment)


@login_required
@require_POST
def release_submit(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    return _act(request, release, workflow.submit_release, "Release submitted for review.",
                action="submit")


@login_required
@require_POST
def release_decide(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    decision = request.POST.get("decision")
    actions = {"approve": (workflow.approve_release, "Approval recorded."),
               "reject": (workflow.reject_release, "Release rejected."),
               "request_changes": (workflow.request_changes, "Changes requested.")}
    if decision == "comment":
        return release_comment(request, release_id)
    if decision not in actions:
        messages.error(request, "choose approve, reject, request changes or comment")
        return redirect(release)
    fn, success = actions[decision]
    return _act(request, release, fn, success, action=decision,
                stage=request.POST.get("stage", ""), comment=request.POST.get("comment", ""))


@login_required
def release_publish(request, release_id: int):
    """GET: the confirmation, which names the stage's audience and the exact bytes it will
    get; POST: publish."""
    release = selectors.get_release(request.user, release_id)
    if request.method != "POST":
        standing = release_standing(release, request.user)
        verdict = standing.verdict("publish")
        if not verdict.allowed:
            messages.error(request, verdict.reason)
            return redirect(release)
        stage = release.target_stage
        return render(request, "releases/release_publish.html", {
            "release": release, "checkpoint": release.checkpoint, "stage": stage,
            "audience": standing.policy.stage(stage).audience, "rule": standing.rule(stage),
            "one_way": standing.policy.stage(stage).one_way})
    stage = request.POST.get("stage", "")
    return _act(request, release, workflow.publish_release, f"Published to {stage}.",
                action="publish", stage=stage)


@login_required
@require_POST
def release_next_stage(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    return _act(request, release, workflow.request_next_stage, "Next stage requested.",
                action="request_next_stage")


@login_required
@require_POST
def release_withdraw(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    return _act(request, release, workflow.withdraw_release, "Release withdrawn.",
                reason=request.POST.get("reason", ""))


@login_required
@require_POST
def release_reopen(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    return _act(request, release, workflow.reopen_bytes,
                "These bytes may start a new release again.",
                reason=request.POST.get("reason", ""))


@login_required
@require_POST
def release_comment(request, release_id: int):
    """A comment without a decision (reviewers send it from the review form's Comment
    button; everyone else from the comment box)."""
    release = selectors.get_release(request.user, release_id)
    try:
        workflow.comment_on_release(actor=request.user, release=release,
                                    comment=request.POST.get("comment", ""))
    except ReleaseInputError as exc:
        messages.error(request, str(exc))
    return redirect(release)


@login_required
def checkpoint_panel(request, checkpoint_id: int):
    checkpoint = get_checkpoint(request.user, checkpoint_id)
    return render(request, "releases/_checkpoint_panel.html", {
        "checkpoint": checkpoint, "releases": checkpoint.releases.order_by("-created_at"),
        "can_open": can_submit_to(request.user, checkpoint.family) and checkpoint.is_loadable})
