"""One mirror run: claim the target, work out what Stagegate wants of it, bring the remote
there (publishing/mirror.py), record what happened. Called by the task; safe to run twice."""

from __future__ import annotations

import uuid

from django.conf import settings

from publishing import services
from publishing.desired import desired_state
from publishing.mirror import apply, inspect
from publishing.models import PublicationTarget
from publishing.remote import Remote, RemoteRefused, TransientRemoteError
from publishing.tokens import TokenUnavailable, target_token
from releases.models import Release


class TargetBusy(TransientRemoteError):
    """Another run holds the target: this one comes back later."""


def run_mirror(*, release_id: int, stage: str, target_id: int, trigger: str,
               final_attempt: bool = True) -> str:
    """Returns the state the run left (in_sync, alarm, withdrawn, failed, not_mirrored, gone).

    Raises TransientRemoteError (the task retries it) only when this is not the last attempt;
    any other failure is recorded on the mirror, with its reason, and Stagegate's own release
    state is never touched."""
    target = (PublicationTarget.objects.select_related("family", "carried_release")
              .filter(pk=target_id, active=True).first())
    release = Release.objects.select_related("checkpoint__family").filter(pk=release_id).first()
    if target is None or release is None:
        return "gone"
    holder = uuid.uuid4().hex
    if not services.claim_target(target.pk, holder):
        if final_attempt:
            return "busy"
        raise TargetBusy(f"another run is mirroring {target.remote_url}")
    try:
        return _run(target, release, trigger, final_attempt)
    finally:
        services.release_claim(target.pk, holder)


def _run(target: PublicationTarget, release: Release, trigger: str, final_attempt: bool) -> str:
    desired = desired_state(target)
    if desired.kind == "nothing":
        services.record_not_mirrored(target, release, desired.reason)
        return "not_mirrored"
    if desired.release.pk != release.pk:
        lead = desired.release
        reason = (f"the remote holds release {lead.pk}, which was withdrawn: it stays private"
                  if desired.kind == "withdrawn" else
                  f"release {lead.pk} ({lead.published_checkpoint.label}) is at a wider stage "
                  f"({lead.current_stage}) on this target")
        services.record_not_mirrored(target, release, f"not mirrored: {reason}")
    mirror = services.mark_syncing(target, desired.release, desired.stage)
    try:
        refusal = services.endpoint_refusal(target.endpoint)
        if refusal:
            raise RemoteRefused(refusal)
        remote = Remote(endpoint=target.endpoint, repo_id=target.remote_repo,
                        token=target_token(target))
        checkpoint = desired.release.published_checkpoint
        state, drift = inspect(remote, target.remote_snapshot)
        if drift:  # reported before any repair, so a repair that fails cannot lose the report
            services.record_drift(target=target, mirror=mirror, drift=drift, trigger=trigger)
        outcome = apply(remote, desired, state,
                        message=f"Stagegate release {desired.release.pk}: {checkpoint.label} "
                                f"({desired.stage})",
                        description=f"Manifest digest {checkpoint.manifest_digest}, published "
                                    f"to the {desired.stage} stage from {settings.SITE_URL}.")
        outcome.drift = drift
    except TransientRemoteError as exc:
        if not final_attempt:
            services.record_retry(mirror, exc.message)
            raise
        services.record_failure(target=target, mirror=mirror, trigger=trigger,
                                reason=f"gave up after retries: {exc.message}")
        return "failed"
    except (RemoteRefused, TokenUnavailable) as exc:
        services.record_failure(target=target, mirror=mirror, trigger=trigger,
                                reason=getattr(exc, "message", None) or str(exc))
        return "failed"
    except Exception as exc:
        # A fault of ours: the mirror must not be left `syncing` for ever. Recorded, not
        # retried (it is not a transient error); the traceback goes to the worker's log.
        services.record_failure(target=target, mirror=mirror, trigger=trigger,
                                reason=f"internal error ({type(exc).__name__}: "
                                       f"{' '.join(str(exc).split())[:300]}); see the worker log")
        raise
    mirror = services.record_outcome(target=target, mirror=mirror, outcome=outcome,
                                     trigger=trigger)
    return mirror.state
