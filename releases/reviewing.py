"""Review decisions on a release: approve, reject, request changes, comment.

Part of the release state machine (releases/workflow.py holds its one transition table and the
other actions); every action here has the workflow's shape: one transaction, the release
re-read under a row lock, its standing asked whether the actor may act, a refusal in words,
exactly one audit event.
"""

from __future__ import annotations

from django.db import transaction

from accounts.roles import user_roles
from audit.services import deny, records_refusals
from releases import notifications, selectors
from releases.errors import ReleaseInputError
from releases.models import Release, Review
from releases.standing import Standing, release_standing
from releases.workflow import S, _locked, _log, _move, _require


def can_review(user, release: Release) -> bool:
    """Whether `user` may approve, reject or request changes on the release now (the page shows
    the form exactly when the services would accept it)."""
    standing = release_standing(release, user)
    return (getattr(user, "is_authenticated", False) and release.status in (S.IN_REVIEW, S.APPROVED)
            and bool(release.target_stage) and bool(standing.reviewer_roles()[0]))


@records_refusals
def approve_release(*, actor, release: Release, stage: str, comment: str = "") -> Release:
    """Record an approval for `stage`; the release becomes approved when every gate passes.

    Guard: the release is in review for that stage; the actor holds a role the stage's rule
    needs and did not submit the release or its checkpoint; the stage is not closed by the
    ceiling or the tier (then no approval can ever help, so none is taken). Idempotent: a
    reviewer whose approval already counts is told so and nothing is recorded. One event,
    `release.review.approve`, whose data says whether the quorum was met.
    """
    with transaction.atomic():
        release = _locked(release)
        standing = release_standing(release, actor)
        if _require(standing.verdict("approve", stage=stage), actor, "release.approve",
                    release):
            return release
        roles = standing.reviewer_roles(stage=stage)[0]
        _review(release, actor, roles, stage, Review.Decision.APPROVE, comment)
        met, after = _maybe_approve(release, standing)
        _log(actor, "release.review.approve", release, standing=after, stage=stage,
             comment=comment, roles=roles, status=release.status, quorum_met=met)
    if met:
        transaction.on_commit(lambda: notifications.approved(release.pk))
    return release


def _maybe_approve(release: Release, before: Standing) -> tuple[bool, Standing]:
    """After a new approval (the evidence unchanged): approved when the gates pass. Returns
    whether they do, and the standing after."""
    after = release_standing(release, evidence=before.evidence)
    if not after.passes_for_approval:
        return False, after
    if release.status != S.APPROVED:
        _move(release, S.APPROVED)
        release.save(update_fields=["status", "updated_at"])
        after = release_standing(release, evidence=before.evidence)
    return True, after


def _review(release, actor, roles, stage, decision, comment) -> Review:
    return Review.objects.create(
        release=release, stage=stage, reviewer=actor, roles=list(user_roles(actor) or roles),
        decision=decision, comment=comment, manifest_digest=release.manifest_digest,
        policy_version=release.policy_version)


@records_refusals
def reject_release(*, actor, release: Release, stage: str, comment: str) -> Release:
    """A reviewer rejects the release: final, and its bytes cannot start a new release unless
    a reviewer reopens them. Guard as approve; a comment is required. Idempotent on a rejected
    release. One `release.review.reject` event."""
    return _decide(actor, release, stage, comment, Review.Decision.REJECT, S.REJECTED,
                   "release.review.reject", "reject")


@records_refusals
def request_changes(*, actor, release: Release, stage: str, comment: str) -> Release:
    """A reviewer sends the release back to its submitter, who may change and resubmit it.
    Guard as approve; a comment is required. One `release.review.request_changes` event."""
    return _decide(actor, release, stage, comment, Review.Decision.REQUEST_CHANGES,
                   S.CHANGES_REQUESTED, "release.review.request_changes", "request_changes")


def _decide(actor, release, stage, comment, decision, to, verb, action) -> Release:
    comment = (comment or "").strip()
    with transaction.atomic():
        release = _locked(release)
        standing = release_standing(release, actor)
        if _require(standing.verdict(action, stage=stage), actor, verb, release):
            return release
        if not comment:
            raise ReleaseInputError("say why in a comment: the submitter will read it")
        roles = standing.reviewer_roles(stage=stage)[0]
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
