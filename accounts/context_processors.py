"""What every page needs to know about the visitor to show them the right navigation. The
pages themselves check permissions in the services; this only decides which links to show."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from accounts.roles import is_lab_member


def navigation(request) -> dict:
    from audit.selectors import can_read_audit

    user = request.user
    return {"lab_member": SimpleLazyObject(lambda: is_lab_member(user)),
            "can_read_audit": SimpleLazyObject(lambda: can_read_audit(user))}
