"""Reads of the registry, with visibility rules in one place."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from accounts.roles import POLICY, RELEASE_MANAGERS, SAFETY, user_roles
from models.models import Checkpoint, ModelFamily

# Roles that see every family in the registry (the `internal` audience besides owners).
REGISTRY_WIDE_ROLES = {SAFETY, POLICY, RELEASE_MANAGERS}


def sees_whole_registry(user) -> bool:
    return bool(getattr(user, "is_superuser", False) or user_roles(user) & REGISTRY_WIDE_ROLES)


def families_visible_to(user) -> QuerySet[ModelFamily]:
    families = ModelFamily.objects.all()
    if not getattr(user, "is_authenticated", False):
        return families.none()
    if not sees_whole_registry(user):
        families = families.filter(owners__user=user)
    return families.annotate(checkpoint_count=Count("checkpoints")).order_by("org", "name")


def checkpoints_visible_to(user) -> QuerySet[Checkpoint]:
    checkpoints = Checkpoint.objects.select_related("family", "submitted_by")
    if not getattr(user, "is_authenticated", False):
        return checkpoints.none()
    if not sees_whole_registry(user):
        checkpoints = checkpoints.filter(Q(family__owners__user=user))
    return checkpoints


def get_family(user, org: str, name: str) -> ModelFamily:
    family = families_visible_to(user).filter(org=org, name=name).first()
    if family is None:
        raise Http404(f"no family {org}/{name} that you can see")
    return family


def get_checkpoint(user, checkpoint_id) -> Checkpoint:
    checkpoint = checkpoints_visible_to(user).filter(pk=checkpoint_id).first()
    if checkpoint is None:
        raise Http404(f"no checkpoint {checkpoint_id} that you can see")
    return checkpoint


def previous_checkpoint(checkpoint: Checkpoint) -> Checkpoint | None:
    """The family's checkpoint before this one that may be compared with it: a ready one (a
    quarantined or unscanned checkpoint has no numbers anyone may rely on)."""
    return (Checkpoint.objects.filter(family_id=checkpoint.family_id,
                                      created_at__lt=checkpoint.created_at,
                                      status=Checkpoint.Status.READY)
            .order_by("-created_at", "-id").first())
