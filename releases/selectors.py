"""Reads for releases: visibility, review queues, and the gates (from the standing)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.roles import user_roles
from models.selectors import checkpoints_visible_to, sees_whole_registry
from releases.models import Release, Review
from releases.policy import Gate
from releases.standing import release_standing


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


def release_gates(release: Release, *, stage: str | None = None,
                  now: datetime | None = None) -> list[Gate]:
    """The policy's gates between this release and `stage` (default: the stage it seeks)."""
    standing = release_standing(release, now=now)
    return standing.gates if stage in (None, standing.stage) else standing.gates_for(stage)


def release_tier(release: Release):
    return release_standing(release).tier


def stage_rule(release: Release, stage: str | None = None):
    """The rule of `stage` for this release: for a stage it has published, the rule of the tier
    it was published under (its audience's terms do not move with later evals); otherwise the
    rule of the tier its evidence puts it in now."""
    stage = stage or release.target_stage
    publication = (release.publications.filter(stage=stage).order_by("-published_at", "-id")
                   .first() if release.current_stage else None)
    policy = release.policy_version.policy
    if publication is not None and publication.tier:
        return policy.stage_rule(stage, publication.tier)
    return release_standing(release).rule(stage)


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
    return release_standing(release).needed_roles


def evidence_table(standing) -> dict:
    """What a reviewer compares, for the stage the release seeks: each threshold the policy
    applies there (the ceiling's, the rule's) with the value it read, the bound, whether it
    passes, and the previous approved checkpoint's value under the same evidence; and whether
    the family has any point to plot for it."""
    from evaluations.formatting import metric_kind
    from evaluations.selectors import evidence, family_series
    from releases.hooks import previous_released_checkpoint
    from releases.policy.model import metric_value

    release = standing.release
    if not standing.stage:
        return {"rows": [], "previous": None}
    spec = release.policy_version.evidence_spec
    previous = previous_released_checkpoint(release.checkpoint)
    previous_results = evidence(previous, spec, with_parent=False).results() if previous else {}
    policy = standing.policy
    thresholds = list(policy.ceiling.capability_evals) if policy.stage(standing.stage).external \
        else []
    thresholds += [t for t in standing.rule().required_evals if t not in thresholds]
    rows = []
    for threshold in thresholds:
        value = metric_value(standing.results, threshold.eval, threshold.metric)
        series = family_series(release.checkpoint.family_id, threshold.eval, threshold.metric,
                               spec)
        rows.append({"eval": threshold.eval, "metric": threshold.metric, "value": value,
                     "bound": threshold.bound, "limit": threshold.limit,
                     "passed": threshold.passes(value),
                     "problem": standing.eval_problems.get(threshold.eval),
                     "previous": metric_value(previous_results, threshold.eval, threshold.metric),
                     "run": standing.evidence.runs.get(threshold.eval),
                     # A pass/fail metric is its verdict; a line of yeses says nothing.
                     "plotted": metric_kind(threshold.metric) != "yesno"
                     and any(v is not None for _, v in series)})
    return {"rows": rows, "previous": previous}
