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


def _groups(user) -> dict[int, str]:
    """The user's groups, id -> name, read once per request (cached on the user object)."""
    if not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, "_stagegate_groups", None)
    if cached is None:
        cached = dict(user.groups.values_list("id", "name"))
        user._stagegate_groups = cached
    return cached


def user_roles(user) -> set[str]:
    return set(_groups(user).values())


def in_group(user, group_id: int | None) -> bool:
    """Membership of one group by id (a family's owners group). A member is answered from the
    cached read; a non-member is asked again, because a service may have just added them (a new
    family's submitter becomes its owner within the same call)."""
    if group_id is None or not getattr(user, "is_authenticated", False):
        return False
    return group_id in _groups(user) or user.groups.filter(pk=group_id).exists()


def is_lab_member(user) -> bool:
    """Inside the lab: a superuser, or a member of any group (a role, or a family's owners).
    Outside researchers and the public see the catalogue, not the registry."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or bool(user_roles(user))
