"""Every write of publishing: targets, Hub account names, sync requests, and what each mirror
run found and did (one transaction per outcome, with its audit event; mail after commit).

Who may configure where approved bytes go: a release manager (or an operator at the command
line, actor=None). Who may ask for a sync: a release manager or one of the family's owners
(a sync only ever brings the remote to what Stagegate already decided)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.roles import RELEASE_MANAGERS, has_role
from audit.services import deny, record_event, records_refusals
from publishing import notifications, tokens
from publishing.models import HubAccount, Mirror, PublicationTarget
from releases.access import can_manage_access
from releases.models import Release

REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
HUB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
S = Mirror.State


class PublicationInputError(ValueError):
    """Input that cannot be used as it is; the message says how to fix it (HTTP 400)."""


def normalize_endpoint(url: str) -> str:
    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise PublicationInputError(f"--endpoint {url!r}: give the Hub's base URL, e.g. "
                                    "https://huggingface.co")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}{parts.path.rstrip('/')}"


def allowed_endpoints() -> list[str]:
    return sorted({normalize_endpoint(e) for e in settings.STAGEGATE_PUBLICATION_ENDPOINTS})


def endpoint_refusal(endpoint: str) -> str | None:
    """Bytes and tokens go only to the Hubs the operator allows
    (STAGEGATE_PUBLICATION_ENDPOINTS)."""
    allowed = set(allowed_endpoints())
    if endpoint not in allowed:
        return (f"{endpoint} is not a Hub this Stagegate publishes to; the operator adds it to "
                f"STAGEGATE_PUBLICATION_ENDPOINTS (now: {', '.join(sorted(allowed)) or 'none'})")
    return None


def may_configure(actor) -> bool:
    return actor is None or has_role(actor, RELEASE_MANAGERS)


def _check_token(token_env: str, token: str) -> None:
    if bool(token_env) == bool(token):
        raise PublicationInputError("give the token either as the name of the workers' "
                                    "environment variable (--token-env) or to be stored "
                                    "encrypted (--token-stdin), not both or neither")
    if token_env and tokens.token_env_refusal(token_env):
        raise PublicationInputError(tokens.token_env_refusal(token_env))
    if token and (len(token) > 4000 or any(c.isspace() for c in token)):
        raise PublicationInputError("that does not look like a Hub token (no spaces, one line)")


@records_refusals
def add_publication_target(*, actor, family, endpoint: str, remote_repo: str,
                           token_env: str = "", token: str = "") -> PublicationTarget:
    """Mirror `family`'s published stages to `remote_repo` on `endpoint` from now on. Guard: a
    release manager (or the command line); an allowed endpoint; the remote repo not already
    some target's. Idempotent for the same family, endpoint and repo (the token is replaced).
    One `publication.target_added` (or `publication.target_token_changed`) event."""
    if not may_configure(actor):
        raise deny(actor=actor, action="publication.add_target", obj=family,
                   reason="configuring where a family is published needs the release_managers role")
    endpoint = normalize_endpoint(endpoint)
    if endpoint_refusal(endpoint):
        raise PublicationInputError(endpoint_refusal(endpoint))
    remote_repo = (remote_repo or "").strip()
    if not REPO_RE.match(remote_repo):
        raise PublicationInputError(f"--repo {remote_repo!r}: give the remote repo as ORG/NAME")
    token_env, token = (token_env or "").strip(), (token or "").strip()
    _check_token(token_env, token)
    encrypted = tokens.encrypt_token(token) if token else ""
    with transaction.atomic():
        target = PublicationTarget.objects.select_for_update().filter(
            endpoint=endpoint, remote_repo__iexact=remote_repo).first()
        if target is not None and target.family_id != family.pk:
            raise PublicationInputError(f"{endpoint}/{remote_repo} is already the target of "
                                        f"{target.family}: one remote repo mirrors one family")
        verb = "publication.target_token_changed" if target else "publication.target_added"
        if target is None:
            try:
                target = PublicationTarget.objects.create(
                    family=family, endpoint=endpoint, remote_repo=remote_repo,
                    token_env=token_env, token_encrypted=encrypted, created_by=actor)
            except IntegrityError:
                raise PublicationInputError(
                    f"{endpoint}/{remote_repo} is already a target") from None
        else:
            target.token_env, target.token_encrypted, target.active = token_env, encrypted, True
            target.save(update_fields=["token_env", "token_encrypted", "active"])
        record_event(actor=actor, verb=verb, obj=target, data={
            "family": family.repo_id, "endpoint": endpoint, "remote_repo": remote_repo,
            "token": target.token_source})
    return target


@records_refusals
def set_target_active(*, actor, target: PublicationTarget, active: bool) -> PublicationTarget:
    """Stop (or resume) mirroring to a target; the remote is left as it is. Idempotent."""
    if not may_configure(actor):
        raise deny(actor=actor, action="publication.set_active", obj=target,
                   reason="changing publication targets needs the release_managers role")
    with transaction.atomic():
        target = PublicationTarget.objects.select_for_update().get(pk=target.pk)
        if target.active == active:
            return target
        target.active = active
        target.save(update_fields=["active"])
        record_event(actor=actor, verb="publication.target_" + ("resumed" if active else "paused"),
                     obj=target, data={"remote": target.remote_url})
    return target


@records_refusals
def link_hub_account(*, actor, user, endpoint: str, username: str) -> HubAccount:
    """Record who `user` is on a Hub (the name partners are granted under). Guard: a release
    manager (or the command line), never the user themself. One `publication.account_linked`."""
    if not may_configure(actor):
        raise deny(actor=actor, action="publication.link_account", obj=user,
                   reason="recording a person's Hub account needs the release_managers role")
    endpoint = normalize_endpoint(endpoint)
    username = (username or "").strip()
    if not HUB_NAME_RE.match(username):
        raise PublicationInputError(f"--username {username!r} is not a Hub user name")
    with transaction.atomic():
        taken = HubAccount.objects.filter(endpoint=endpoint, username__iexact=username).exclude(
            user=user).first()
        if taken is not None:
            raise PublicationInputError(f"{username} on {endpoint} is already {taken.user}'s")
        account, created = HubAccount.objects.update_or_create(
            user=user, endpoint=endpoint, defaults={"username": username, "recorded_by": actor})
        record_event(actor=actor, verb="publication.account_linked", obj=user, data={
            "user": user.get_username(), "endpoint": endpoint, "username": username})
    for target in PublicationTarget.objects.filter(endpoint=endpoint, active=True,
                                                   carried_release__isnull=False):
        queue_mirror(release=target.carried_release, target=target, trigger="account")
    return account


# --- queueing -------------------------------------------------------------------------------------

def queue_mirror(*, release: Release, target: PublicationTarget, trigger: str) -> None:
    """One task for (release, stage, target), after commit. A row already queued stays so."""
    from publishing.tasks import mirror_release

    with transaction.atomic():
        mirror, _ = Mirror.objects.get_or_create(target=target, release=release,
                                                 defaults={"stage": release.current_stage})
        if mirror.state not in (S.SYNCING, S.QUEUED):
            Mirror.objects.filter(pk=mirror.pk).update(state=S.QUEUED, updated_at=timezone.now())
        args = (release.pk, release.current_stage, target.pk, trigger)
        transaction.on_commit(lambda: mirror_release.delay(*args))


def queue_family_mirrors(*, release: Release, trigger: str) -> int:
    targets = list(PublicationTarget.objects.filter(family_id=release.checkpoint.family_id,
                                                    active=True))
    for target in targets:
        queue_mirror(release=release, target=target, trigger=trigger)
    return len(targets)


@records_refusals
def request_sync(*, actor, release: Release, target: PublicationTarget) -> None:
    """"Sync now": bring the target to what Stagegate says, at once. Guard: a release manager or
    a family owner; the target is the release's family's. One `publication.sync_requested`."""
    if not can_manage_access(actor, release) or target.family_id != release.checkpoint.family_id:
        raise deny(actor=actor, action="publication.sync", obj=release,
                   reason="syncing a publication target needs the release_managers role or "
                          "family ownership")
    with transaction.atomic():
        record_event(actor=actor, verb="publication.sync_requested", obj=release,
                     data={"target": target.pk, "remote": target.remote_url})
        queue_mirror(release=release, target=target, trigger="sync-now")


# --- runs -----------------------------------------------------------------------------------------

def claim_target(target_id: int, holder: str) -> bool:
    """One run per target at a time: a compare-and-set claim, which expires so a dead worker's
    claim does not hold the target for ever."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.STAGEGATE_PUBLICATION_CLAIM_SECONDS)
    return PublicationTarget.objects.filter(pk=target_id).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(
        claimed_until=until, claimed_by=holder) == 1


def release_claim(target_id: int, holder: str) -> None:
    PublicationTarget.objects.filter(pk=target_id, claimed_by=holder).update(
        claimed_until=None, claimed_by="")


def mark_syncing(target: PublicationTarget, release: Release, stage: str) -> Mirror:
    mirror, _ = Mirror.objects.get_or_create(target=target, release=release,
                                             defaults={"stage": stage})
    Mirror.objects.filter(pk=mirror.pk).update(state=S.SYNCING, stage=stage,
                                               attempts=mirror.attempts + 1,
                                               updated_at=timezone.now())
    mirror.refresh_from_db()
    return mirror


def record_not_mirrored(target: PublicationTarget, release: Release, reason: str) -> None:
    mirror, _ = Mirror.objects.get_or_create(target=target, release=release,
                                             defaults={"stage": release.current_stage})
    Mirror.objects.filter(pk=mirror.pk).update(state=S.NOT_MIRRORED, detail=reason,
                                               checked_at=timezone.now(), updated_at=timezone.now())


def record_retry(mirror: Mirror, reason: str) -> None:
    Mirror.objects.filter(pk=mirror.pk).update(detail=f"retrying after: {reason}",
                                               updated_at=timezone.now())


def record_failure(*, target: PublicationTarget, mirror: Mirror, reason: str,
                   trigger: str) -> None:
    """The run stopped: Stagegate's own state is as it was; the mirror says why, and the next
    run has no snapshot to find drift against (part of a run's changes may have been made)."""
    with transaction.atomic():
        Mirror.objects.filter(pk=mirror.pk).update(state=S.FAILED, detail=reason,
                                                   checked_at=timezone.now(),
                                                   updated_at=timezone.now())
        PublicationTarget.objects.filter(pk=target.pk).update(remote_snapshot={})
        record_event(actor=None, verb="publication.failed", obj=mirror.release, data={
            "target": target.pk, "remote": target.remote_url, "stage": mirror.stage,
            "reason": reason, "trigger": trigger})


def record_drift(*, target: PublicationTarget, mirror: Mirror, drift: list[str],
                 trigger: str) -> None:
    """The remote changed outside Stagegate since the last run that succeeded: the mirror is
    `drifted` (until the repair that follows succeeds), one `publication.drift_found` event,
    mail to the release managers."""
    with transaction.atomic():
        Mirror.objects.filter(pk=mirror.pk).update(
            state=S.DRIFTED, detail="changed outside Stagegate: " + "; ".join(drift),
            updated_at=timezone.now())
        record_event(actor=None, verb="publication.drift_found", obj=mirror.release, data={
            "target": target.pk, "remote": target.remote_url, "stage": mirror.stage,
            "trigger": trigger, "drift": drift})
        transaction.on_commit(lambda: notifications.drift(mirror.pk, drift))


def record_outcome(*, target: PublicationTarget, mirror: Mirror, outcome, trigger: str) -> Mirror:
    """What a run did, in one transaction: the changes made (one event: `publication.synced`,
    `.repaired` after drift, `.withdrawn`), or an alarm (event and mail). A run that changed
    nothing writes no event."""
    release = mirror.release
    now = timezone.now()
    base = {"target": target.pk, "remote": target.remote_url, "stage": mirror.stage,
            "trigger": trigger}
    state = {"in_sync": S.IN_SYNC, "alarm": S.ALARM, "withdrawn": S.WITHDRAWN}[outcome.state]
    if state == S.ALARM:
        detail = "sha256 mismatch: " + "; ".join(outcome.mismatches)
    elif state == S.WITHDRAWN:
        detail = "private, every access revoked: the release was withdrawn"
    else:
        detail = (f"in sync at {outcome.remote_commit[:12]}: {len(outcome.verified)} file(s), "
                  "every sha256 read back from the Hub equals the manifest's")
        if outcome.drift:
            detail += "; repaired what changed outside Stagegate: " + "; ".join(outcome.drift)
    with transaction.atomic():
        fields = {"state": state, "detail": detail, "notes": outcome.notes,
                  "remote_commit": outcome.remote_commit, "verified": outcome.verified,
                  "checked_at": now, "updated_at": now}
        if outcome.changes:
            fields["synced_at"] = now
        Mirror.objects.filter(pk=mirror.pk).update(**fields)
        target_fields = {"remote_snapshot": outcome.snapshot}
        if outcome.committed:
            target_fields["carried_release"] = release
        PublicationTarget.objects.filter(pk=target.pk).update(**target_fields)
        if state == S.ALARM:
            verb = "publication.mismatch"
        elif not outcome.changes:
            verb = None
        elif state == S.WITHDRAWN:
            verb = "publication.withdrawn"
        else:
            verb = "publication.repaired" if outcome.drift else "publication.synced"
        if verb:
            record_event(actor=None, verb=verb, obj=release, data={
                **base, "changes": outcome.changes, "commit": outcome.remote_commit,
                "mismatches": outcome.mismatches, "status": state})
        if state == S.ALARM:
            transaction.on_commit(lambda: notifications.mismatch(mirror.pk, outcome.mismatches))
    mirror.refresh_from_db()
    return mirror
