"""Review decisions on a release: approve, reject, request changes, comment.

Part of the release state machine (releases/workflow.py holds its one transition table and the
other actions); every action here has the workflow's shape: one transaction, the release
re-read under a row lock, a refusal in words, exactly one audit event.
"""

from __future__ import annotations

from django.db import transaction

from accounts.roles import user_roles
from audit.services import deny, records_refusals
from releases import notifications, selectors
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import Release, Review
from releases.workflow import S, _gates_pass_for_approval, _locked, _log, _move


def _reviewer_roles(actor, release: Release, stage: str) -> tuple[list[str], str]:
    """(the actor's roles that count for this stage, or [] and the reason why none do)."""
    if actor.pk in (release.submitted_by_id, release.checkpoint.submitted_by_id):
        return [], "you submitted this release or its checkpoint; someone else must review it"
    needed = sorted({a.role for a in selectors.stage_rule(release, stage).approvals})
    mine = sorted(user_roles(actor) & set(needed)) or (["superuser"] if actor.is_superuser else [])
    if not mine:
        roles = " or ".join(needed) if needed else "none (this stage needs no approval)"
        return [], f"reviewing {stage} needs the role {roles}"
    return mine, ""


def can_review(user, release: Release) -> bool:
    """Whether `user` may approve, reject or request changes on the release now (the page shows
    the form exactly when the services would accept it)."""
    return (getattr(user, "is_authenticated", False) and release.status in (S.IN_REVIEW, S.APPROVED)
            and bool(release.target_stage)
            and bool(_reviewer_roles(user, release, release.target_stage)[0]))


def _check_reviewer(actor, release: Release, stage: str, action: str) -> list[str]:
    """The actor's roles that count for this stage, or a refusal that says why not."""
    roles, reason = _reviewer_roles(actor, release, stage)
    if not roles:
        raise deny(actor=actor, action=action, obj=release, reason=reason)
    return roles


def _check_stage(release: Release, stage: str, action: str) -> None:
    if release.status not in (S.IN_REVIEW, S.APPROVED):
        raise TransitionNotAllowed(f"a release that is {release.get_status_display()} is not "
                                   f"under review; it cannot be {action}")
    if stage != release.target_stage:
        raise TransitionNotAllowed(f"the release is under review for {release.target_stage}, "
                                   f"not {stage}")


@records_refusals
def approve_release(*, actor, release: Release, stage: str, comment: str = "") -> Release:
    """Record an approval for `stage`; the release becomes approved when every gate passes.

    Guard: the release is in review for that stage; the actor holds a role the stage's rule
    needs and did not submit the release or its checkpoint; the stage is not closed by the
    ceiling or the tier (then no approval can ever help, so none is taken). Idempotent: a
    reviewer approving twice counts once and the second call records nothing. One event,
    `release.review.approve`, whose data says whether the quorum was met.
    """
    with transaction.atomic():
        release = _locked(release)
        _check_stage(release, stage, "approved")
        roles = _check_reviewer(actor, release, stage, "release.approve")
        closed = [g for g in selectors.release_gates(release, stage=stage)
                  if g.name in ("ceiling", "stage_allowed") and not g.passed]
        if closed:
            raise TransitionNotAllowed(closed[0].reason)
        mine = [r for r in selectors.binding_reviews(release) if r.reviewer_id == actor.pk]
        if mine and mine[-1].decision == Review.Decision.APPROVE:
            return release
        _review(release, actor, roles, stage, Review.Decision.APPROVE, comment)
        met = _maybe_approve(release)
        _log(actor, "release.review.approve", release, stage=stage, comment=comment,
             roles=roles, status=release.status, quorum_met=met)
    if met:
        transaction.on_commit(lambda: notifications.approved(release.pk))
    return release


def _maybe_approve(release: Release) -> bool:
    if _gates_pass_for_approval(release):
        if release.status != S.APPROVED:
            _move(release, S.APPROVED)
            release.save(update_fields=["status", "updated_at"])
        return True
    return False


def _review(release, actor, roles, stage, decision, comment) -> Review:
    return Review.objects.create(
        release=release, stage=stage, reviewer=actor, roles=list(user_roles(actor) or roles),
        decision=decision, comment=comment, manifest_digest=release.manifest_digest,
        policy_version=release.policy_version)


@records_refusals
def reject_release(*, actor, release: Release, stage: str, comment: str) -> Release:
    """A reviewer rejects the release: final. Guard as approve; a comment is required.
    Idempotent on a rejected release. One `release.review.reject` event."""
    return _decide(actor, release, stage, comment, Review.Decision.REJECT, S.REJECTED,
                   "release.review.reject", "rejected")


@records_refusals
def request_changes(*, actor, release: Release, stage: str, comment: str) -> Release:
    """A reviewer sends the release back to its submitter, who may change and resubmit it.
    Guard as approve; a comment is required. One `release.review.request_changes` event."""
    return _decide(actor, release, stage, comment, Review.Decision.REQUEST_CHANGES,
                   S.CHANGES_REQUESTED, "release.review.request_changes", "sent back")


def _decide(actor, release, stage, comment, decision, to, verb, words) -> Release:
    comment = (comment or "").strip()
    with transaction.atomic():
        release = _locked(release)
        if release.status == to:
            return release
        _check_stage(release, stage, words)
        roles = _check_reviewer(actor, release, stage, verb)
        if not comment:
            raise ReleaseInputError("say why in a comment: the submitter will read it")
        _review(release, actor, roles, stage, decision, comment)
        _move(release, to)
        release.save(update_fields=["status", "updated_at"])
        _log(actor, verb, release, stage=stage, comment=comment, roles=roles,
             status=release.status)
    transaction.on_commit(lambda: notifications.decided(release.pk, decision, actor.username))
    return release


@records_refusals
def comment_on_release(*, actor, release: Release, comment: str) -> Review:
    """Anyone who can see the release may comment. One `release.commented` event."""
    if not selectors.releases_visible_to(actor).filter(pk=release.pk).exists():
        raise deny(actor=actor, action="release.comment", obj=release,
                   reason="you may comment only on a release you can see")
    comment = (comment or "").strip()
    if not comment:
        raise ReleaseInputError("a comment cannot be empty")
    with transaction.atomic():
        release = _locked(release)
        review = Review.objects.create(
            release=release, stage=release.target_stage or release.current_stage or "",
            reviewer=actor, roles=sorted(user_roles(actor)), decision=Review.Decision.COMMENT,
            comment=comment, manifest_digest=release.manifest_digest,
            policy_version=release.policy_version)
        _log(actor, "release.commented", release, comment=comment)
    return review
