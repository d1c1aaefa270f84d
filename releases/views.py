"""Release pages: queue, release page with gates and timeline, and the action forms."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import RELEASE_MANAGERS, has_role, user_roles
from audit.models import AuditEvent
from evaluations.selectors import latest_runs
from models.diff import checkpoint_diff
from models.scanning import scan_reports
from models.selectors import get_checkpoint, previous_checkpoint
from models.services import can_submit_to
from releases import selectors, workflow
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import Release
from releases.workflow import ASSESSMENT_FIELDS


def _act(request, release, fn, success: str, **kwargs):
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
    status = request.GET.get("status")
    if status:
        releases = releases.filter(status=status)
    return render(request, "releases/release_list.html", {
        "releases": releases[:200], "statuses": Release.Status.choices, "status": status})


@login_required
def review_queue(request):
    from django.core.paginator import Paginator

    page = Paginator(selectors.review_queue(request.user), 50).get_page(request.GET.get("page"))
    return render(request, "releases/review_queue.html", {
        "releases": page, "page": page,
        "roles": sorted(user_roles(request.user))})


@login_required
def release_detail(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    checkpoint = release.checkpoint
    policy = release.policy_version.policy
    stage = (release.target_stage if not release.is_terminal and release.status != "published"
             else policy.next_stage(release.current_stage or None))
    gates = selectors.release_gates(release, stage=stage) if stage and not release.is_terminal else []
    tier = selectors.release_tier(release)
    previous = previous_checkpoint(checkpoint)
    reviews = list(release.reviews.select_related("reviewer", "policy_version"))
    # The newest 200 events; the audit page (linked) has them all.
    timeline = list(AuditEvent.objects.filter(object_type="releases.release",
                                              object_id=str(release.pk)).order_by("-seq")[:200])[::-1]
    return render(request, "releases/release_detail.html", {
        "release": release, "checkpoint": checkpoint, "stage": stage,
        "gates": gates, "gates_pass": bool(gates) and all(g.passed for g in gates),
        "tier": tier, "ladder": policy.stage_names,
        "review_rows": [(r, r.standing(release)) for r in reviews],
        "timeline": timeline, "runs": sorted(latest_runs(release.manifest_digest).values(),
                                             key=lambda r: r.eval_name),
        "scan": scan_reports(checkpoint),
        "diff": checkpoint_diff(previous, checkpoint) if previous else None,
        "assessment": [(key, label, release.assessment.get(key, "")) for key, label in
                       ASSESSMENT_FIELDS.items()],
        "is_submitter": request.user.pk == release.submitted_by_id,
        "can_review": workflow.can_review(request.user, release),
        "can_publish": has_role(request.user, RELEASE_MANAGERS) and release.status == "approved",
        "can_withdraw": not release.is_terminal and workflow.may_withdraw(request.user, release),
        "can_request_next": (release.status == "published" and stage is not None and (
            request.user.pk == release.submitted_by_id or has_role(request.user, RELEASE_MANAGERS))),
        "fields": ASSESSMENT_FIELDS,
    })


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
    return _act(request, release, workflow.submit_release, "Release submitted for review.")


@login_required
@require_POST
def release_decide(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    decision = request.POST.get("decision")
    actions = {"approve": (workflow.approve_release, "Approval recorded."),
               "reject": (workflow.reject_release, "Release rejected."),
               "request_changes": (workflow.request_changes, "Changes requested.")}
    if decision not in actions:
        messages.error(request, "choose approve, reject or request changes")
        return redirect(release)
    fn, success = actions[decision]
    return _act(request, release, fn, success, stage=request.POST.get("stage", ""),
                comment=request.POST.get("comment", ""))


@login_required
@require_POST
def release_publish(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    stage = request.POST.get("stage", "")
    return _act(request, release, workflow.publish_release, f"Published to {stage}.", stage=stage)


@login_required
@require_POST
def release_next_stage(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    return _act(request, release, workflow.request_next_stage, "Next stage requested.")


@login_required
@require_POST
def release_withdraw(request, release_id: int):
    release = selectors.get_release(request.user, release_id)
    return _act(request, release, workflow.withdraw_release, "Release withdrawn.",
                reason=request.POST.get("reason", ""))


@login_required
@require_POST
def release_comment(request, release_id: int):
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
