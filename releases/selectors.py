"""Reads for releases: gates, review queues, visibility."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.roles import user_roles
from evaluations.selectors import flat_results
from models.selectors import checkpoints_visible_to, sees_whole_registry
from releases import clock
from releases.models import Release, Review
from releases.policy import ApprovalInput, Gate


def releases_visible_to(user) -> QuerySet[Release]:
    releases = Release.objects.select_related("checkpoint__family", "submitted_by",
                                              "policy_version")
    if sees_whole_registry(user):
        return releases  # no subquery over every checkpoint for reviewers and managers
    return releases.filter(checkpoint__in=checkpoints_visible_to(user))


def get_release(user, release_id) -> Release:
    from django.http import Http404

    release = releases_visible_to(user).filter(pk=release_id).first()
    if release is None:
        raise Http404(f"no release {release_id} that you can see")
    return release


def binding_reviews(release: Release) -> list[Review]:
    """Reviews that still count: same stage sought, same bytes, same policy version."""
    return [r for r in release.reviews.select_related("reviewer")
            if r.binds(release) and r.decision != Review.Decision.COMMENT]


def approval_inputs(release: Release) -> list[ApprovalInput]:
    return [ApprovalInput(r.reviewer.username, frozenset(r.roles), r.decision, r.comment)
            for r in binding_reviews(release)]


def release_gates(release: Release, *, stage: str | None = None,
                  now: datetime | None = None) -> list[Gate]:
    """The policy's gates between this release and `stage` (default: the stage it seeks)."""
    policy = release.policy_version.policy
    stage = stage or release.target_stage or policy.next_stage(release.current_stage or None)
    checkpoint = release.checkpoint
    uploader = checkpoint.submitted_by.username if checkpoint.submitted_by else ""
    return policy.gates_for(
        stage, parameters=checkpoint.parameters, eval_results=flat_results(release.manifest_digest),
        approvals=approval_inputs(release), submitter=release.submitted_by.username,
        uploaders=[uploader] if uploader else [], current_stage=release.current_stage or None,
        entered_current_stage_at=release.stage_entered_at, now=now or clock.now())


def release_tier(release: Release):
    policy = release.policy_version.policy
    return policy.assess_tier(release.checkpoint.parameters, flat_results(release.manifest_digest))


def stage_rule(release: Release, stage: str | None = None):
    policy = release.policy_version.policy
    tier = release_tier(release).tier
    return policy.stage_rule(stage or release.target_stage, tier)


def review_queue(user) -> QuerySet[Release]:
    """What waits for this user, oldest first: releases in review that still need an approval
    from one of their roles, that they did not submit and have not yet decided on. A fixed
    number of queries, whatever the number of releases (the workflow keeps `awaiting_roles`)."""
    waiting = (releases_visible_to(user).filter(status=Release.Status.IN_REVIEW)
               .exclude(submitted_by=user).exclude(checkpoint__submitted_by=user))
    if not user.is_superuser:
        roles = user_roles(user)
        if not roles:
            return waiting.none()
        match = Q()
        for role in roles:
            match |= Q(awaiting_roles__contains=f",{role},")
        waiting = waiting.filter(match)
    decided = Review.objects.filter(
        release=OuterRef("pk"), reviewer=user, stage=OuterRef("target_stage"),
        manifest_digest=OuterRef("manifest_digest"), policy_version=OuterRef("policy_version"))
    return waiting.exclude(Exists(decided.exclude(decision=Review.Decision.COMMENT))).order_by(
        "updated_at", "id")


def needed_roles(release: Release) -> list[str]:
    """Roles whose approvals the release still needs, for notifications."""
    return sorted({gate.name.split(":", 1)[1] for gate in release_gates(release)
                   if gate.name.startswith("approvals:") and not gate.passed})


