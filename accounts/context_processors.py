"""What every page needs to know about the visitor to show them the right navigation. The
pages themselves check permissions in the services; this only decides which links to show."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from accounts.roles import (POLICY, RELEASE_MANAGERS, RESEARCHERS, SAFETY, has_role,
                            is_lab_member, user_roles)


def navigation(request) -> dict:
    from audit.selectors import can_read_audit

    user = request.user

    def owns_a_family() -> bool:
        return getattr(user, "is_authenticated", False) and user.groups.filter(
            owned_family__isnull=False).exists()

    return {
        "lab_member": SimpleLazyObject(lambda: is_lab_member(user)),
        "can_read_audit": SimpleLazyObject(lambda: can_read_audit(user)),
        # Navigation by role: what each person comes to do.
        "nav_submits": SimpleLazyObject(lambda: has_role(user, RESEARCHERS)),
        "nav_reviews": SimpleLazyObject(lambda: getattr(user, "is_superuser", False)
                                        or bool(user_roles(user) & {SAFETY, POLICY})),
        "nav_access": SimpleLazyObject(lambda: has_role(user, RELEASE_MANAGERS)
                                       or owns_a_family()),
    }
