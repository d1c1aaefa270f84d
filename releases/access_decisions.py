"""Access decisions the Hub's access-request API can take and the first ones (releases/access.py)
could not: a release manager's grant without a request (or against an earlier rejection), and
undoing a decision (back to pending). Same guard as every access decision: can_grant_access
(a release manager or a family owner, never the release's submitter or uploader).

One model, two interfaces: the REST API and pages use releases/access.py; the Hub API
(releases/hub_access.py) maps the Hub's verbs onto those services and these."""

from __future__ import annotations

from django.db import transaction

from audit.services import deny, record_event, records_refusals
from releases import clock, signals
from releases.access import _approve, _grant_refusal, _stage_index, can_grant_access, \
    required_licence
from releases.errors import TransitionNotAllowed
from releases.models import AccessGrant, AccessRequest, Release


def _check_gated(release: Release) -> None:
    if release.status == Release.Status.WITHDRAWN:
        raise TransitionNotAllowed("the release was withdrawn")
    if release.current_stage != "gated":
        raise TransitionNotAllowed(
            f"this release is {release.current_stage or 'not published'}, not gated: "
            + ("name partners with their agreement on the release page" if
               _stage_index(release.current_stage) <= _stage_index("partners") else
               "anyone may download it"))


@records_refusals
def grant_gated_access(*, actor, release: Release, user, reason: str = "") -> AccessGrant:
    """Let `user` download a gated release. Guard: can_grant_access; the release is at gated.
    A pending request of theirs is approved (it is the decision asked for); otherwise a grant
    is made without one, carrying the licence version they last accepted for this release when
    it is the current one; if not, they accept the licence on the model page before the first
    download. Idempotent: an active grant is returned. One `access.granted` event."""
    if not can_grant_access(actor, release):
        raise deny(actor=actor, action="access.grant", obj=release,
                   reason=_grant_refusal(actor, release, "granting access"))
    _check_gated(release)
    now = clock.now()
    with transaction.atomic():
        active = next((g for g in AccessGrant.objects.select_for_update().filter(
            release=release, user=user) if g.is_active_at(now)), None)
        if active is not None:
            return active
        pending = AccessRequest.objects.select_for_update().filter(
            release=release, user=user, status=AccessRequest.Status.PENDING).first()
        if pending is not None:
            grant = _approve(pending, decided_by=actor, now=now, reason=reason)
        else:
            latest = AccessRequest.objects.filter(release=release, user=user).order_by(
                "-created_at", "-id").first()
            licence = required_licence(release, "gated") or ""
            current = latest is not None and latest.licence_version == licence
            accepted = latest.licence_version if current else ""
            grant = AccessGrant.objects.create(release=release, user=user, stage="gated",
                                               licence_version=accepted, granted_by=actor,
                                               granted_at=now)
        record_event(actor=actor, verb="access.granted", obj=release, data={
            "user": user.get_username(), "stage": "gated", "reason": reason,
            "request": pending.pk if pending else None,
            "licence_accepted": bool(grant.licence_version)})
        signals.send_on_commit(signals.access_changed, release_id=release.pk)
    return grant


@records_refusals
def return_to_pending(*, actor, release: Release, user, reason: str = "") -> AccessRequest:
    """Undo the decision on `user`'s access: any access they have is revoked, and their request
    is pending again, as a new request with the same answers and licence (the one decided on
    stays in the history). Guard: can_grant_access; the release is at gated; they asked for
    access before. Idempotent: a pending request is returned. One
    `access.returned_to_pending` event."""
    if not can_grant_access(actor, release):
        raise deny(actor=actor, action="access.return_to_pending", obj=release,
                   reason=_grant_refusal(actor, release, "deciding access requests"))
    _check_gated(release)
    now = clock.now()
    with transaction.atomic():
        requests_ = list(AccessRequest.objects.select_for_update().filter(
            release=release, user=user).order_by("-created_at", "-id"))
        pending = next((r for r in requests_ if r.status == AccessRequest.Status.PENDING), None)
        if pending is not None:
            return pending
        if not requests_:
            raise TransitionNotAllowed(f"{user.get_username()} never asked for access to this "
                                       "release: there is no request to put back")
        last = requests_[0]
        revoked = AccessGrant.objects.filter(release=release, user=user,
                                             revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=actor, revoke_reason=reason or "decision undone: pending")
        request = AccessRequest.objects.create(release=release, user=user, stage="gated",
                                               answers=last.answers,
                                               licence_version=last.licence_version)
        record_event(actor=actor, verb="access.returned_to_pending", obj=release, data={
            "user": user.get_username(), "request": request.pk, "undone": last.pk,
            "grants_revoked": revoked, "reason": reason})
        signals.send_on_commit(signals.access_changed, release_id=release.pk)
    return request
