"""How releases plugs into the registry and evaluations (which do not import it)."""

from __future__ import annotations

import logging

from models.models import Checkpoint

log = logging.getLogger(__name__)


def required_evals_for_checkpoint(checkpoint: Checkpoint) -> list[str]:
    """Every eval the current policy could require of this checkpoint, at any stage."""
    from evaluations.selectors import flat_results
    from releases.policies_service import current_policy_version

    policy = current_policy_version().policy
    tier = policy.tier_for(checkpoint.parameters, flat_results(checkpoint.manifest_digest))
    names: list[str] = []
    for stage in policy.stage_names:
        for name in policy.required_evals(stage, tier):
            if name not in names:
                names.append(name)
    return names


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
    from releases.models import Release
    from releases.workflow import refresh_release

    for release_id in Release.objects.filter(
            manifest_digest=manifest_digest,
            status=Release.Status.EVALUATING).values_list("pk", flat=True):
        refresh_release(release_id=release_id)
