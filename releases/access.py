"""Who may see and download a release, and every write about access: partner grants, gated
access requests and their decisions, revocation, re-consent, and download records.

Stages widen one way: internal (the family's owners and Stagegate's reviewers and release
managers), partners (+ named partners with an unexpired agreement), gated (+ users whose access
request was approved and who accepted the current licence), open (anyone). A withdrawn release
is nobody's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from accounts.roles import RELEASE_MANAGERS, has_role, in_group
from audit.models import AuditEvent
from audit.services import deny, record_event, records_refusals
from models.selectors import sees_whole_registry
from releases import clock, signals
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import AccessGrant, AccessRequest, Release
from releases.policy import LADDER


@dataclass(frozen=True)
class Access:
    allowed: bool
    code: str      # ok | anonymous | not_granted | expired | revoked | reconsent | withdrawn | not_published
    message: str


def is_internal_audience(user, release: Release) -> bool:
    return sees_whole_registry(user) or in_group(user, release.checkpoint.family.owners_id)


def can_manage_access(user, release: Release) -> bool:
    """May revoke access (taking access away never needs a second person)."""
    return has_role(user, RELEASE_MANAGERS) or in_group(user, release.checkpoint.family.owners_id)


def is_own_release(user, release: Release) -> bool:
    return getattr(user, "pk", None) is not None and user.pk in (
        release.submitted_by_id, release.checkpoint.submitted_by_id)


def can_grant_access(user, release: Release) -> bool:
    """May name partners and decide access requests: a release manager or one of the family's
    owners, but never the release's submitter or its checkpoint's uploader (separation of
    duties: nobody opens their own release to an audience)."""
    return can_manage_access(user, release) and not is_own_release(user, release)


def manageable_releases(user, *, granting: bool = True):
    """can_grant_access() (or, with granting=False, can_manage_access()) as one query: every
    published release for release managers, those of the families a user owns for everyone
    else; when granting, never the user's own releases."""
    releases = published_releases()
    if not getattr(user, "is_authenticated", False):
        return releases.none()
    if not has_role(user, RELEASE_MANAGERS):
        releases = releases.filter(checkpoint__family__owners__user=user)
    if granting:
        releases = releases.exclude(submitted_by=user).exclude(checkpoint__submitted_by=user)
    return releases


def required_licence(release: Release, stage: str) -> str | None:
    from releases.selectors import stage_rule

    rule = stage_rule(release, stage)
    return rule.terms.licence_version if rule.terms else None


def _stage_index(stage: str) -> int:
    return LADDER.index(stage) if stage in LADDER else -1


def download_access(user, release: Release, *, now=None) -> Access:
    """May `user` download `release`'s weights now, and if not, why not (in words)."""
    if release.status == Release.Status.WITHDRAWN:
        return Access(False, "withdrawn", f"this release was withdrawn: {release.withdrawn_reason}")
    stage = release.current_stage
    if not stage:
        return Access(False, "not_published", "this release is not published yet")
    if stage == "open" or is_internal_audience(user, release):
        return Access(True, "ok", "")
    if not getattr(user, "is_authenticated", False):
        return Access(False, "anonymous", f"this model is {stage}: sign in with a Stagegate token "
                                          "that has been granted access")
    if stage == "internal":
        return Access(False, "not_granted", "this release is internal to the lab")
    now = now or clock.now()
    grants = list(AccessGrant.objects.filter(release=release, user=user).order_by("-granted_at"))
    usable = [g for g in grants if _stage_index(g.stage) <= _stage_index(stage)]
    active = [g for g in usable if g.is_active_at(now)]
    for grant in active:
        licence = required_licence(release, grant.stage)
        if licence and not grant.licence_version:
            # Granted by a release manager before the person accepted any licence.
            return Access(False, "reconsent", f"you were granted access: accept the licence "
                                              f"{licence} on the model page to download")
        if licence and grant.licence_version != licence:
            return Access(False, "reconsent", f"the licence changed to {licence}; accept it "
                                              "again on the model page to keep access")
        return Access(True, "ok", "")
    if any(g.revoked_at for g in usable):
        return Access(False, "revoked", "your access to this model was revoked")
    if usable:
        return Access(False, "expired", "your access to this model has expired")
    if stage == "gated":
        return Access(False, "not_granted", "this model is gated: request access on its page and "
                                            "accept the licence")
    return Access(False, "not_granted", "this model is open to named partners only")


def discoverable_releases(user):
    """The published releases that appear in the catalogue and the hub for `user`, in one
    query: open and gated ones for everyone (gated weights stay gated); partners and internal
    ones for the lab's staff, the family's owners, and anyone who held a grant on them (so a
    lapsed partner hears that access expired rather than that the model does not exist)."""
    from django.db.models import Q

    releases = published_releases()
    public = Q(current_stage__in=["open", "gated"])
    if not getattr(user, "is_authenticated", False):
        return releases.filter(public)
    if sees_whole_registry(user):
        return releases
    return releases.filter(public | Q(checkpoint__family__owners__user=user)
                           | Q(grants__user=user)).distinct()


def published_releases():
    """Releases that have published a stage, with the checkpoint they serve."""
    return (Release.objects.exclude(current_stage="").filter(published_checkpoint__isnull=False)
            .select_related("checkpoint__family", "published_checkpoint__family",
                            "policy_version", "submitted_by"))


# --- writes ---------------------------------------------------------------------------------------

def _grant_refusal(actor, release: Release, what: str) -> str:
    if is_own_release(actor, release):
        return (f"{what} on a release you submitted (or whose checkpoint you uploaded) is for "
                "someone else: a release manager or another owner")
    return f"{what} needs the release_managers role or family ownership"


@records_refusals
def grant_partner_access(*, actor, release: Release, user, agreement_note: str,
                         expires_at=None) -> AccessGrant:
    """Name a partner. Guard: a release manager (or the family's owners); the release is
    approved for or published to partners or beyond; an agreement note. The expiry defaults to
    the policy's `expiry_days`. Idempotent for an active grant. One `access.granted` event."""
    if not can_grant_access(actor, release):
        raise deny(actor=actor, action="access.grant", obj=release,
                   reason=_grant_refusal(actor, release, "naming partners"))
    if release.status == Release.Status.WITHDRAWN:
        raise TransitionNotAllowed("the release was withdrawn")
    reached = max(_stage_index(release.current_stage), _stage_index(release.target_stage)
                  if release.status == Release.Status.APPROVED else -1)
    if reached < _stage_index("partners"):
        raise TransitionNotAllowed("partners can be named once the release is approved for "
                                   "the partners stage")
    agreement_note = (agreement_note or "").strip()
    if not agreement_note:
        raise ReleaseInputError("record the partner's agreement (e.g. its reference and date)")
    now = clock.now()
    from releases.selectors import stage_rule

    rule = stage_rule(release, "partners")
    if expires_at is None and rule.expiry_days:
        expires_at = now + timedelta(days=rule.expiry_days)
    with transaction.atomic():
        existing = next((g for g in AccessGrant.objects.select_for_update().filter(
            release=release, user=user, stage="partners") if g.is_active_at(now)), None)
        if existing:
            return existing
        grant = AccessGrant.objects.create(
            release=release, user=user, stage="partners", agreement_note=agreement_note,
            licence_version=rule.terms.licence_version if rule.terms else "",
            granted_by=actor, granted_at=now, expires_at=expires_at)
        record_event(actor=actor, verb="access.granted", obj=release, data={
            "user": user.username, "stage": "partners", "expires_at": expires_at,
            "agreement": agreement_note})
        signals.send_on_commit(signals.access_changed, release_id=release.pk)
    return grant


@records_refusals
def request_access(*, actor, release: Release, answers: dict, licence_version: str,
                   accept: bool) -> AccessRequest:
    """Ask for a gated release. Guard: signed in; the release is at `gated` (or beyond); every
    required form field answered; the licence accepted is the current one. Automatic policies
    grant at once. Someone with an active grant under an older licence re-consents instead.
    Idempotent: a pending request is returned as it is. One `access.requested` event (or
    `access.reconsented`)."""
    from releases.selectors import stage_rule

    if not getattr(actor, "is_authenticated", False):
        raise deny(actor=None, action="access.request", obj=release,
                   reason="sign in to request access")
    if release.status == Release.Status.WITHDRAWN:
        raise TransitionNotAllowed("the release was withdrawn")
    if _stage_index(release.current_stage) < _stage_index("gated"):
        raise TransitionNotAllowed("this release does not take access requests: it is not gated")
    rule = stage_rule(release, "gated")
    current = rule.terms.licence_version if rule.terms else ""
    if not accept:
        raise ReleaseInputError("accept the licence and the use policy to request access")
    if licence_version != current:
        raise ReleaseInputError(f"the current licence is {current}, not {licence_version!r}; "
                                "read it and accept that version")
    # Accepting the licence is recorded as its version; it is not one of the form's answers.
    answers = {k: v for k, v in (answers or {}).items() if k != "accept"}
    missing = [f.label for f in rule.form_fields if f.required and f.type != "checkbox"
               and f.name != "accept" and not str(answers.get(f.name, "")).strip()]
    if missing:
        raise ReleaseInputError("answer: " + "; ".join(missing))
    now = clock.now()
    with transaction.atomic():
        grants = AccessGrant.objects.select_for_update().filter(release=release, user=actor,
                                                                stage="gated")
        active = next((g for g in grants if g.is_active_at(now)), None)
        if active:
            if active.licence_version != current:
                old = active.licence_version
                active.licence_version = current
                active.save(update_fields=["licence_version"])
                record_event(actor=actor, verb="access.reconsented", obj=release, data={
                    "from": old, "to": current})
            return active.request  # gated grants always come from a request
        pending = AccessRequest.objects.filter(release=release, user=actor,
                                               status=AccessRequest.Status.PENDING).first()
        if pending:
            return pending
        request = AccessRequest.objects.create(release=release, user=actor, stage="gated",
                                               answers=answers, licence_version=current)
        automatic = rule.access == "automatic"
        if automatic:
            _approve(request, decided_by=None, now=now, reason="automatic: the policy's access "
                                                               "mode for this tier")
        record_event(actor=actor, verb="access.requested", obj=release, data={
            "request": request.pk, "licence_version": current, "answers": answers,
            "status": request.status})
        if automatic:
            signals.send_on_commit(signals.access_changed, release_id=release.pk)
    return request


def _approve(request: AccessRequest, *, decided_by, now, reason: str) -> AccessGrant:
    request.status = AccessRequest.Status.APPROVED
    request.decided_by = decided_by
    request.decided_at = now
    request.decision_reason = reason
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    return AccessGrant.objects.create(release=request.release, user=request.user, stage="gated",
                                      licence_version=request.licence_version, request=request,
                                      granted_by=decided_by, granted_at=now)


@records_refusals
def decide_access_request(*, actor, request: AccessRequest, approve: bool,
                          reason: str = "") -> AccessRequest:
    """Approve or reject one pending request. Guard: a release manager or the family's owners.
    Idempotent on a decided request. One `access.granted` or `access.rejected` event."""
    release = request.release
    if not can_grant_access(actor, release):
        raise deny(actor=actor, action="access.decide", obj=release,
                   reason=_grant_refusal(actor, release, "deciding access requests"))
    with transaction.atomic():
        request = AccessRequest.objects.select_for_update().get(pk=request.pk)
        if request.status != AccessRequest.Status.PENDING:
            return request
        if release.status == Release.Status.WITHDRAWN:
            raise TransitionNotAllowed("the release was withdrawn")
        now = clock.now()
        if approve:
            _approve(request, decided_by=actor, now=now, reason=reason)
            verb = "access.granted"
        else:
            request.status = AccessRequest.Status.REJECTED
            request.decided_by, request.decided_at, request.decision_reason = actor, now, reason
            request.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
            verb = "access.rejected"
        record_event(actor=actor, verb=verb, obj=release, data={
            "request": request.pk, "user": request.user.username, "stage": "gated",
            "reason": reason})
        signals.send_on_commit(signals.access_changed, release_id=release.pk)
    return request


def decide_access_requests(*, actor, request_ids: list[int], approve: bool,
                           reason: str = "") -> list[AccessRequest]:
    """Bulk decisions: each request decided (and audited) on its own."""
    return [decide_access_request(actor=actor, request=request, approve=approve, reason=reason)
            for request in AccessRequest.objects.filter(pk__in=request_ids).select_related(
                "release__checkpoint__family", "user")]


@records_refusals
def revoke_grant(*, actor, grant: AccessGrant, reason: str) -> AccessGrant:
    """Revoke one person's access at once. Idempotent. One `access.revoked` event."""
    if not can_manage_access(actor, grant.release):
        raise deny(actor=actor, action="access.revoke", obj=grant.release,
                   reason="revoking access needs the release_managers role or family ownership")
    with transaction.atomic():
        grant = AccessGrant.objects.select_for_update().get(pk=grant.pk)
        if grant.revoked_at:
            return grant
        grant.revoked_at, grant.revoked_by, grant.revoke_reason = clock.now(), actor, reason
        grant.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        record_event(actor=actor, verb="access.revoked", obj=grant.release, data={
            "user": grant.user.username, "stage": grant.stage, "reason": reason})
        signals.send_on_commit(signals.access_changed, release_id=grant.release_id)
    return grant


def revoke_all_on_withdrawal(release: Release, actor) -> tuple[int, int]:
    """Inside the withdrawal's transaction: (grants revoked, requests cancelled), which the
    withdrawal's one event records."""
    now = clock.now()
    grants = AccessGrant.objects.filter(release=release, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=actor, revoke_reason="release withdrawn")
    requests = AccessRequest.objects.filter(
        release=release, status=AccessRequest.Status.PENDING).update(
        status=AccessRequest.Status.CANCELLED, decided_at=now,
        decision_reason="release withdrawn")
    return grants, requests


def record_download(*, user, release: Release, path: str, sha256: str, size: int,
                    sent: int, byte_range: str | None) -> None:
    """One `weights.downloaded` event per GET of a file (and the bytes, for /metrics)."""
    from config.metrics import count_download

    count_download(sent=sent)
    record_event(actor=user, verb="weights.downloaded", obj=release, data={
        "family": release.published_checkpoint.family.repo_id, "path": path, "sha256": sha256,
        "manifest_digest": release.published_checkpoint.manifest_digest, "size": size,
        "bytes": sent, "range": byte_range})


def past_downloaders(release: Release):
    from django.contrib.auth import get_user_model

    ids = (AuditEvent.objects.filter(verb="weights.downloaded", object_type="releases.release",
                                     object_id=str(release.pk), actor__isnull=False)
           .values_list("actor_id", flat=True).distinct())
    return get_user_model().objects.filter(pk__in=list(ids))


