"""How releases plugs into the registry and evaluations (which do not import it)."""

from __future__ import annotations

import logging

from django.db import transaction

from models.models import Checkpoint

log = logging.getLogger(__name__)


def required_evals_for_checkpoint(checkpoint: Checkpoint) -> list[str]:
    """Every eval the current policy could require of this checkpoint, at any stage."""
    from evaluations.selectors import evidence
    from releases.policies_service import current_policy_version

    version = current_policy_version()
    policy = version.policy
    results = evidence(checkpoint, version.evidence_spec, list(policy.eval_names)).results()
    tier = policy.tier_for(checkpoint.parameters, results)
    names: list[str] = []
    for stage in policy.stage_names:
        for name in policy.required_evals(stage, tier):
            if name not in names:
                names.append(name)
    return names


def current_evidence(checkpoint: Checkpoint | None) -> dict:
    """What counts under the current policy (for a checkpoint's evals outside a release)."""
    from releases.policies_service import current_policy_version

    return current_policy_version().evidence_spec


def convert_pickles_by_policy(sender, checkpoint_id: int, **kwargs) -> None:
    """`conversion.pytorch_to_safetensors: automatic`: a PyTorch checkpoint that has just become
    ready is converted by its submitter's authority. request_conversion's own guards decide
    (every pickle proven safe, not merely risk-accepted; the submitter still owns the family);
    a refusal is logged, never raised into the scan that made the checkpoint ready."""
    from django.core.exceptions import PermissionDenied

    from models.conversion import ConversionRefused, request_conversion
    from releases.policies_service import current_policy_version

    checkpoint = (Checkpoint.objects.select_related("family", "submitted_by")
                  .filter(pk=checkpoint_id).first())
    if (checkpoint is None or checkpoint.submitted_by is None
            or not any(f.needs_scan for f in checkpoint.files.all())
            or not current_policy_version().policy.converts_pickles):
        return
    try:
        request_conversion(actor=checkpoint.submitted_by, checkpoint=checkpoint)
    except (ConversionRefused, PermissionDenied) as exc:
        log.info("not converting %s automatically: %s", checkpoint, exc)


def previous_released_checkpoint(checkpoint: Checkpoint) -> Checkpoint | None:
    """drift_vs_parent's parent: the newest earlier checkpoint of the family that a release
    took to approval or publication."""
    from releases.models import Release

    released = (Release.objects.filter(
        checkpoint__family_id=checkpoint.family_id, checkpoint__created_at__lt=checkpoint.created_at,
        status__in=[Release.Status.APPROVED, Release.Status.PUBLISHED])
        .order_by("-checkpoint__created_at").select_related("checkpoint").first())
    return released.checkpoint if released else None


def queue_required_evals(sender, checkpoint_id: int, **kwargs) -> None:
    from evaluations.services import EvalRequestError, request_evals

    checkpoint = Checkpoint.objects.filter(pk=checkpoint_id).first()
    if checkpoint is None or not checkpoint.is_loadable:
        return
    try:
        request_evals(actor=None, checkpoint=checkpoint)
    except EvalRequestError as exc:  # e.g. a policy eval whose pack was removed
        log.warning("could not queue the required evals of %s: %s", checkpoint, exc.message)


def refresh_waiting_releases(sender, manifest_digest: str, **kwargs) -> None:
    """An eval of these bytes finished: releases waiting for it move on, and every open
    release's review-queue columns (the required evals that failed) follow."""
    from releases.models import Release
    from releases.workflow import refresh_release

    for release_id in (Release.objects.filter(manifest_digest=manifest_digest)
                       .exclude(status__in=[Release.Status.REJECTED, Release.Status.WITHDRAWN])
                       .values_list("pk", flat=True)):
        refresh_release(release_id=release_id)


def recheck_reviewers_approvals(sender, instance, action: str, pk_set=None, reverse=False,
                                **kwargs) -> None:
    """A user's groups changed (a role granted or taken away): every release in review or
    approved on which they decided is re-checked (an approval counts only while its reviewer
    holds the role it was given under)."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    from django.contrib.auth import get_user_model

    from releases.models import Release, Review
    from releases.workflow import recheck_approvals

    if reverse:  # group.user_set changed: pk_set holds users (None on clear: all of the group's)
        users = list(pk_set) if pk_set else list(get_user_model().objects.values_list("pk", flat=True))
    else:
        users = [instance.pk]
    if hasattr(instance, "_stagegate_groups"):
        del instance._stagegate_groups
    releases = (Review.objects.filter(reviewer_id__in=users, release__status__in=[
        Release.Status.IN_REVIEW, Release.Status.APPROVED]).values_list("release_id", flat=True)
        .distinct())
    for release_id in list(releases):
        transaction.on_commit(lambda pk=release_id: recheck_approvals(release_id=pk))


def recheck_deactivated_reviewer(sender, instance, **kwargs) -> None:
    """A deactivated account holds no role: its approvals stop counting at once."""
    from releases.models import Release, Review
    from releases.workflow import recheck_approvals

    if instance.pk is None or instance.is_active:
        return
    for release_id in list(Review.objects.filter(reviewer_id=instance.pk, release__status__in=[
            Release.Status.IN_REVIEW, Release.Status.APPROVED]).values_list(
            "release_id", flat=True).distinct()):
        transaction.on_commit(lambda pk=release_id: recheck_approvals(release_id=pk))


def request_new_family_evidence(sender, family_id: int, **kwargs) -> None:
    """A canary or prefix was registered: the evals keyed on them have new keys, so each open
    release of the family gets its required evidence requested again (runs that exist are
    reused; nothing failed is re-queued)."""
    from evaluations.services import EvalRequestError, request_evals
    from releases.models import Release
    from releases.standing import release_standing

    for release in (Release.objects.filter(checkpoint__family_id=family_id)
                    .exclude(status__in=[Release.Status.REJECTED, Release.Status.WITHDRAWN,
                                         Release.Status.DRAFT])
                    .select_related("checkpoint__family", "policy_version", "submitted_by")):
        if not release.checkpoint.is_loadable:
            continue
        try:
            request_evals(actor=None, checkpoint=release.checkpoint,
                          eval_names=release_standing(release).required_evals,
                          evidence=release.policy_version.evidence_spec)
        except EvalRequestError as exc:
            log.warning("could not request the new evidence of %s: %s", release, exc.message)
