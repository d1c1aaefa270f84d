"""Roles are Django groups, managed in the admin. These are their names."""

from __future__ import annotations

RESEARCHERS = "researchers"          # may submit checkpoints
SAFETY = "safety"                    # safety reviewers
POLICY = "policy"                    # policy / legal reviewers
RELEASE_MANAGERS = "release_managers"  # publish stages

ALL_ROLES = (RESEARCHERS, SAFETY, POLICY, RELEASE_MANAGERS)
REVIEWER_ROLES = (SAFETY, POLICY)


def has_role(user, role: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return role in user_roles(user)


def user_roles(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_stagegate_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._stagegate_roles = cached
    return cached


def is_lab_member(user) -> bool:
    """Inside the lab: a superuser, or a member of any group (a role, or a family's owners).
    Outside researchers and the public see the catalogue, not the registry."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or bool(user_roles(user))
