"""The release state machine (DESIGN.md §3). Every status change of a Release happens here.

Each action has one shape (STYLE.md §2): one transaction; the release re-read under a row lock;
its standing (releases/standing.py) computed once and asked whether the actor may act; unchanged
if already where the action leads; TransitionNotAllowed with a reason a person can act on when
a guard fails; save(update_fields=...); exactly one audit event; side effects (eval requests,
mail, webhooks) after commit.
"""

from __future__ import annotations

from django.db import transaction

from audit.refusals import record_refusal_event
from audit.services import deny, records_refusals
from models.models import Checkpoint
from models.services import can_submit_to
from releases import access, clock, notifications, signals
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.attestation import decision_record
from releases.models import BytesReopening, Release, StagePublication
from releases.policies_service import current_policy_version
from releases.signatures import sign_after_publication
from releases.standing import (ASSESSMENT_FIELDS, NOOP, PERMISSION, Standing, Verdict,
                               barring, may_withdraw, release_standing)
from signing.keys import SigningKeyMissing, current_key

S = Release.Status

# The one table of allowed transitions.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.WITHDRAWN}),
    S.SUBMITTED: frozenset({S.EVALUATING, S.IN_REVIEW, S.WITHDRAWN}),
    S.EVALUATING: frozenset({S.IN_REVIEW, S.WITHDRAWN}),
    S.IN_REVIEW: frozenset({S.EVALUATING, S.APPROVED, S.CHANGES_REQUESTED, S.REJECTED,
                            S.WITHDRAWN}),
    S.CHANGES_REQUESTED: frozenset({S.SUBMITTED, S.WITHDRAWN}),
    S.APPROVED: frozenset({S.PUBLISHED, S.IN_REVIEW, S.CHANGES_REQUESTED, S.REJECTED,
                           S.WITHDRAWN}),
    S.PUBLISHED: frozenset({S.SUBMITTED, S.WITHDRAWN}),
    S.REJECTED: frozenset(),
    S.WITHDRAWN: frozenset(),
}


def _move(release: Release, to: str) -> None:
    if to not in TRANSITIONS[release.status]:
        raise TransitionNotAllowed(f"a release that is {release.get_status_display()} cannot "
                                   f"become {S(to).label}")
    release.status = to


def _locked(release: Release) -> Release:
    return (Release.objects.select_for_update(of=("self",)).select_related(
        "checkpoint__family", "checkpoint__submitted_by", "submitted_by", "policy_version")
        .get(pk=release.pk))


def _require(verdict: Verdict, actor, action: str, release: Release) -> bool:
    """Raise the refusal a verdict stands for; True when the action is already done (noop)."""
    if verdict.allowed:
        return False
    if verdict.refusal == NOOP:
        return True
    if verdict.refusal == PERMISSION:
        raise deny(actor=actor, action=action, obj=release, reason=verdict.reason)
    raise TransitionNotAllowed(verdict.reason)


def _log(actor, verb: str, release: Release, *, standing: Standing | None = None,
         **data) -> None:
    """The action's one audit event; and the review queue's columns (the roles still needed,
    the required evals that failed), which any action may move. `standing` is the release's
    standing after the action (computed here when the caller has none)."""
    standing = standing or release_standing(release)
    awaiting = ""
    if release.status == S.IN_REVIEW:
        awaiting = "".join(f",{role}" for role in standing.needed_roles) + ","
    failed = standing.failed_evals if not release.is_terminal else []
    failed = [{"eval": f["eval"], "status": f["status"], "error": f["error"]} for f in failed]
    if awaiting != release.awaiting_roles or failed != release.failed_evals:
        release.awaiting_roles, release.failed_evals = awaiting, failed
        Release.objects.filter(pk=release.pk).update(awaiting_roles=awaiting, failed_evals=failed)
    notifications.record(actor=actor, verb=verb, release=release, data=data)


def _clean_assessment(assessment) -> dict:
    if assessment is None:
        return {}
    if not isinstance(assessment, dict):
        raise ReleaseInputError("assessment must be an object with "
                                + ", ".join(ASSESSMENT_FIELDS))
    unknown = sorted(set(assessment) - set(ASSESSMENT_FIELDS))
    if unknown:
        raise ReleaseInputError(f"unknown assessment field(s) {', '.join(unknown)}; use "
                                + ", ".join(ASSESSMENT_FIELDS))
    return {key: str(assessment.get(key, "") or "").strip() for key in ASSESSMENT_FIELDS}


def _check_owner(actor, release_or_checkpoint, action: str) -> None:
    checkpoint = getattr(release_or_checkpoint, "checkpoint", release_or_checkpoint)
    if not can_submit_to(actor, checkpoint.family):
        raise deny(actor=actor, action=action, obj=release_or_checkpoint,
                   reason=f"only the owners of {checkpoint.family} may do this")


def _check_ready(checkpoint: Checkpoint) -> None:
    if not checkpoint.is_loadable:
        raise TransitionNotAllowed(f"{checkpoint} is {checkpoint.get_status_display()}: only a "
                                   "ready checkpoint can be reviewed or published")


def _check_not_barred(checkpoint: Checkpoint) -> None:
    """Bytes a release was rejected for (or withdrawn for, after publication) do not come back
    through a new release or an edit, unless a reviewer reopened them with a reason."""
    barred = (Release.objects.filter(manifest_digest=checkpoint.manifest_digest,
                                     reopening__isnull=True)
              .filter(status__in=[S.REJECTED, S.WITHDRAWN]).exclude(
                  status=S.WITHDRAWN, current_stage="").order_by("-updated_at").first())
    if barred is not None:
        what = "rejected" if barred.status == S.REJECTED else "withdrawn after publication"
        raise TransitionNotAllowed(
            f"the bytes of {checkpoint} ({checkpoint.manifest_digest[:12]}…) were {what} in "
            f"release {barred.pk}; they cannot start a new release unless a reviewer reopens "
            "them with a reason (on that release's page)")


# --- drafting -----------------------------------------------------------------------------------

@records_refusals
def create_release(*, actor, checkpoint: Checkpoint, assessment: dict | None = None,
                   supersedes: Release | None = None) -> Release:
    """Open a draft release of a ready checkpoint under the current policy version.

    Guard: the actor owns the family; the checkpoint is ready; its bytes were not rejected (or
    withdrawn after publication) unless reopened; it has no other open release; a superseded
    release is of the same family. Side effect: `release.created`.
    """
    _check_owner(actor, checkpoint, "release.create")
    _check_ready(checkpoint)
    cleaned = _clean_assessment(assessment)
    if supersedes is not None and supersedes.checkpoint.family_id != checkpoint.family_id:
        raise ReleaseInputError(f"release {supersedes.pk} is of {supersedes.checkpoint.family}, "
                                f"not {checkpoint.family}: a release supersedes one of its own "
                                "family")
    with transaction.atomic():
        Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
        _check_not_barred(checkpoint)
        open_release = (Release.objects.filter(checkpoint=checkpoint)
                        .exclude(status__in=[S.REJECTED, S.WITHDRAWN]).first())
        if open_release:
            raise TransitionNotAllowed(f"{checkpoint} already has release {open_release.pk} "
                                       f"({open_release.get_status_display()}); continue that one")
        release = Release.objects.create(
            checkpoint=checkpoint, manifest_digest=checkpoint.manifest_digest,
            policy_version=current_policy_version(), submitted_by=actor, assessment=cleaned,
            supersedes=supersedes)
        _log(actor, "release.created", release, checkpoint=checkpoint.pk,
             manifest_digest=checkpoint.manifest_digest,
             supersedes=supersedes.pk if supersedes else None)
    return release


@records_refusals
def update_release(*, actor, release: Release, checkpoint: Checkpoint | None = None,
                   assessment: dict | None = None) -> Release:
    """Change a draft (or a release sent back for changes): its assessment, or its checkpoint.

    Guard: the submitter; status draft or changes requested; a new checkpoint only while the
    release has published nothing (after that its bytes are pinned: new bytes are a new
    release), ready, in the same family, and not barred. A new checkpoint changes the pinned
    digest, which voids every earlier approval. Side effect: `release.updated`. Idempotent: no
    change, no event.
    """
    with transaction.atomic():
        release = _locked(release)
        standing = release_standing(release, actor)
        _require(standing.verdict("update"), actor, "release.update", release)
        changed = {}
        if checkpoint is not None and checkpoint.pk != release.checkpoint_id:
            _require(standing.may_change_checkpoint(), actor, "release.update", release)
            if checkpoint.family_id != release.checkpoint.family_id:
                raise ReleaseInputError(f"{checkpoint} is in another family than the release")
            _check_ready(checkpoint)
            _check_not_barred(checkpoint)
            changed["checkpoint"] = {"from": release.checkpoint_id, "to": checkpoint.pk,
                                     "manifest_digest": checkpoint.manifest_digest}
            release.checkpoint = checkpoint
            release.manifest_digest = checkpoint.manifest_digest
        if assessment is not None:
            cleaned = {**release.assessment, **{k: v for k, v in _clean_assessment(assessment).items()
                                                if k in assessment}}
            if cleaned != release.assessment:
                release.assessment = cleaned
                changed["assessment"] = sorted(k for k in assessment)
        if not changed:
            return release
        release.save(update_fields=["checkpoint", "manifest_digest", "assessment", "updated_at"])
        _log(actor, "release.updated", release, **changed)
    return release


# --- submission and routing ---------------------------------------------------------------------

@records_refusals
def submit_release(*, actor, release: Release) -> Release:
    """Ask for the next stage: the first one from a draft, the same one again after changes.

    Guard: the submitter; status draft or changes requested; the assessment is complete; the
    checkpoint is ready; a next stage exists. The release pins the current policy version (a new
    policy voids earlier approvals). Side effects: required evals that have not run are
    requested; the release goes to `evaluating` until they finish, else to `in_review`, and the
    reviewers it waits for are mailed. One `release.submitted` event.
    """
    with transaction.atomic():
        release = _locked(release)
        if _require(release_standing(release, actor).verdict("submit"), actor,
                    "release.submit", release):
            return release
        _seek_next_stage(actor, release, "release.submitted")
    return release


@records_refusals
def request_next_stage(*, actor, release: Release) -> Release:
    """After a stage is published, ask for the next one (back through evals and review).

    Guard: the submitter or a release manager; status published; the current stage is not the
    last. One `release.next_stage_requested` event.
    """
    with transaction.atomic():
        release = _locked(release)
        if _require(release_standing(release, actor).verdict("request_next_stage"), actor,
                    "release.request_next_stage", release):
            return release
        _seek_next_stage(actor, release, "release.next_stage_requested")
    return release


def _seek_next_stage(actor, release: Release, verb: str) -> None:
    """Pin the current policy, aim at the next stage, and go through evals to review."""
    _check_ready(release.checkpoint)
    release.policy_version = current_policy_version()
    target = release.policy_version.policy.next_stage(release.current_stage or None)
    if target is None:
        raise TransitionNotAllowed(f"{release.current_stage} is the last stage: nothing follows it")
    release.target_stage = target
    _move(release, S.SUBMITTED)
    standing = _route(release)
    release.save(update_fields=["status", "target_stage", "policy_version", "tier", "updated_at"])
    _log(actor, verb, release, standing=standing, stage=release.target_stage,
         status=release.status, tier=release.tier)


def _route(release: Release) -> Standing:
    """From submitted (or evaluating): request the evidence the pinned policy needs for the
    stage sought (never re-queueing a run that failed or errored), then wait or review.
    Returns the release's standing after routing."""
    from evaluations.services import EvalRequestError, request_evals

    before = release_standing(release)
    try:
        runs = request_evals(actor=None, checkpoint=release.checkpoint,
                             eval_names=before.required_evals,
                             evidence=release.policy_version.evidence_spec)
    except EvalRequestError as exc:
        raise TransitionNotAllowed(f"the policy's evals cannot run: {exc.message}") from None
    pending = [run for run in runs if not run.is_finished]
    to = S.EVALUATING if pending else S.IN_REVIEW
    if release.status != to:
        _move(release, to)
    # The runs just requested are part of the evidence now.
    standing = release_standing(release) if runs else before
    release.tier = standing.tier.tier.name
    if to == S.IN_REVIEW:
        # A stage whose rule needs no approvals is approved as soon as its gates pass.
        if standing.passes_for_approval:
            _move(release, S.APPROVED)
            transaction.on_commit(lambda: notifications.approved(release.pk))
        else:
            transaction.on_commit(lambda: notifications.waiting_for_review(release.pk))
        standing = release_standing(release, evidence=standing.evidence)
    return standing


def refresh_release(*, release_id: int) -> Release | None:
    """Called when an eval of the release's bytes finishes. An `evaluating` release leaves for
    review once nothing the policy requires is still running (the tier may have risen,
    requiring more): one `release.evaluated` event. Any other open release only has its review
    queue columns brought up to date (no event). Nothing is re-queued: a required eval that
    failed stays failed, and the gates say so, until a person asks again."""
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(pk=release_id).first()
        if release is None or release.is_terminal:
            return release
        if release.status != S.EVALUATING:
            standing = release_standing(release)
            if release.status == S.IN_REVIEW and standing.passes_for_approval:
                # The evidence a closed gate waited for arrived, and the approvals are in.
                _move(release, S.APPROVED)
                release.save(update_fields=["status", "updated_at"])
                _log(None, "release.evaluated", release,
                     standing=release_standing(release, evidence=standing.evidence),
                     stage=release.target_stage, tier=release.tier, status=release.status)
                transaction.on_commit(lambda: notifications.approved(release.pk))
                return release
            failed = [{"eval": f["eval"], "status": f["status"], "error": f["error"]}
                      for f in standing.failed_evals]
            if failed != release.failed_evals:
                Release.objects.filter(pk=release.pk).update(failed_evals=failed)
            return release
        standing = _route(release)
        if release.status == S.EVALUATING:
            release.save(update_fields=["tier", "updated_at"])
            return release
        release.save(update_fields=["status", "tier", "updated_at"])
        _log(None, "release.evaluated", release, standing=standing, stage=release.target_stage,
             tier=release.tier, status=release.status)
    return release


def recheck_approvals(*, release_id: int) -> Release | None:
    """A reviewer's roles changed: an approved release whose approvals no longer meet its
    quorum goes back to review (one `release.approval_lapsed` event naming whose approval
    stopped counting); a release in review whose approvals meet it again (the roles came back)
    is approved (`release.quorum_met`); the review queue's columns are brought up to date
    either way. System action; idempotent."""
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(pk=release_id).first()
        if release is None or release.status not in (S.IN_REVIEW, S.APPROVED):
            return release
        standing = release_standing(release)
        if release.status == S.APPROVED and not standing.passes_for_approval:
            _move(release, S.IN_REVIEW)
            release.save(update_fields=["status", "updated_at"])
            _log(None, "release.approval_lapsed", release,
                 standing=release_standing(release, evidence=standing.evidence),
                 stage=release.target_stage, status=release.status,
                 not_counted=standing.lapsed_approvals)
            transaction.on_commit(lambda: notifications.waiting_for_review(release.pk))
            return release
        if release.status == S.IN_REVIEW and standing.passes_for_approval:
            # The roles came back (or another reviewer's did): the approvals given count again.
            _move(release, S.APPROVED)
            release.save(update_fields=["status", "updated_at"])
            _log(None, "release.quorum_met", release,
                 standing=release_standing(release, evidence=standing.evidence),
                 stage=release.target_stage, status=release.status)
            transaction.on_commit(lambda: notifications.approved(release.pk))
            return release
        awaiting = ("".join(f",{role}" for role in standing.needed_roles) + ","
                    if release.status == S.IN_REVIEW else "")
        if awaiting != release.awaiting_roles:
            Release.objects.filter(pk=release.pk).update(awaiting_roles=awaiting)
    return release


# --- publication and withdrawal -----------------------------------------------------------------

@records_refusals
def publish_release(*, actor, release: Release, stage: str) -> Release:
    """Open `stage` to its audience.

    Guard: a release manager; the release is approved for exactly that stage; every gate passes
    now (the dwell time included, and every approval re-checked: a reviewer who has lost the
    role counts no more). Side effects: the stage's audience can see and download exactly the
    bytes approved: the first publication pins the release's checkpoint (it can never change
    after), and the history records who published what, for which bytes and tier; mail and
    webhooks; after commit, the stage is signed (releases/signatures.py: model.sig and the
    release attestation of what this decision read, recorded here), then mirrored. Fails
    closed without a signing key (production never signs with a generated one). Idempotent:
    publishing the current stage again changes nothing. One `release.published` event.
    """
    try:
        return _publish(actor, release, stage)
    except SigningKeyMissing as exc:
        # Recorded here, after the transaction has unwound, so the refusal stays in the log.
        record_refusal_event(actor=actor, verb="release.publish_refused",
                             action="release.publish", reason=str(exc), obj=release)
        raise TransitionNotAllowed(f"cannot publish: {exc}") from None


def _publish(actor, release: Release, stage: str) -> Release:
    with transaction.atomic():
        release = _locked(release)
        standing = release_standing(release, actor)
        if _require(standing.verdict("publish", stage=stage), actor, "release.publish",
                    release):
            return release
        current_key()  # no stage is published that could not be signed
        now = clock.now()
        decision = decision_record(release=release, standing=standing, stage=stage, actor=actor,
                                   now=now)
        tier = standing.tier.tier.name
        _move(release, S.PUBLISHED)
        release.current_stage = stage
        release.stage_entered_at = now
        release.tier = tier
        if release.published_checkpoint_id is None:
            release.published_checkpoint = release.checkpoint
        release.save(update_fields=["status", "current_stage", "stage_entered_at", "tier",
                                    "published_checkpoint", "updated_at"])
        publication = StagePublication.objects.create(
            release=release, stage=stage, published_by=actor, published_at=now,
            checkpoint=release.checkpoint, manifest_digest=release.manifest_digest, tier=tier,
            decision=decision)
        _log(actor, "release.published", release,
             standing=release_standing(release, evidence=standing.evidence), stage=stage,
             manifest_digest=release.manifest_digest, tier=tier)
    transaction.on_commit(lambda: notifications.published(release.pk))
    # Signing tells the mirrors (releases.signals.stage_published) once the stage is signed,
    # so a Hub target never receives a stage without its signatures.
    transaction.on_commit(lambda: sign_after_publication(publication.pk))
    return release


@records_refusals
def withdraw_release(*, actor, release: Release, reason: str) -> Release:
    """Withdraw a release: it leaves every audience at once and cannot come back.

    Guard: the submitter (before anything is published), a release manager, or a superuser; a
    reason is required. In the same transaction, every access grant is revoked and every
    pending access request cancelled, counted in the one `release.withdrawn` event; after
    commit, past downloaders are mailed. Bytes withdrawn after publication cannot start a new
    release unless a reviewer reopens them. Idempotent on a withdrawn release.
    """
    reason = (reason or "").strip()
    with transaction.atomic():
        release = _locked(release)
        if _require(release_standing(release, actor).verdict("withdraw"), actor,
                    "release.withdraw", release):
            return release
        if not reason:
            raise ReleaseInputError("say why the release is withdrawn: its page will show it")
        _move(release, S.WITHDRAWN)
        release.withdrawn_reason = reason
        release.withdrawn_at = clock.now()
        release.save(update_fields=["status", "withdrawn_reason", "withdrawn_at", "updated_at"])
        grants, requests = access.revoke_all_on_withdrawal(release, actor)
        _log(actor, "release.withdrawn", release, reason=reason, stage=release.current_stage,
             grants_revoked=grants, requests_cancelled=requests)
    transaction.on_commit(lambda: notifications.withdrawn(release.pk))
    signals.send_on_commit(signals.release_withdrawn, release_id=release.pk)
    return release


@records_refusals
def reopen_bytes(*, actor, release: Release, reason: str) -> BytesReopening:
    """Let the bytes of a rejected release (or one withdrawn after publication) start a new
    release after all.

    Guard: a reviewer (safety or policy) or a release manager who neither submitted the release
    nor uploaded its checkpoint; a reason. The release itself stays rejected or withdrawn.
    Idempotent: reopened once. One `release.bytes_reopened` event.
    """
    reason = (reason or "").strip()
    with transaction.atomic():
        release = _locked(release)
        if _require(release_standing(release, actor).verdict("reopen"), actor,
                    "release.reopen", release):
            return release.reopening
        if not reason:
            raise ReleaseInputError("say why these bytes may be released after all: the next "
                                    "release's reviewers will read it")
        reopening = BytesReopening.objects.create(release=release, reason=reason,
                                                  manifest_digest=release.manifest_digest,
                                                  reopened_by=actor)
        _log(actor, "release.bytes_reopened", release, reason=reason,
             manifest_digest=release.manifest_digest)
    return reopening


# Review decisions live in their own module (the state machine is one table, in two files);
# they are imported here so that every workflow action is `workflow.<action>`.
from releases.reviewing import (  # noqa: E402
    approve_release,
    can_review,
    comment_on_release,
    reject_release,
    request_changes,
)

__all__ = ["TRANSITIONS", "TransitionNotAllowed", "approve_release", "barring", "can_review",
           "comment_on_release", "create_release", "publish_release", "recheck_approvals",
           "refresh_release", "reject_release", "reopen_bytes", "request_changes",
           "request_next_stage", "submit_release", "update_release", "may_withdraw",
           "withdraw_release"]
