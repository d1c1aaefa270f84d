"""The release state machine (DESIGN.md §3). Every status change of a Release happens here.

Each action has one shape (STYLE.md §2): one transaction; the release re-read under a row lock;
unchanged if already where the action leads; TransitionNotAllowed with a reason a person can act
on when a guard fails; save(update_fields=...); exactly one audit event; side effects (eval
requests, mail, webhooks) after commit.
"""

from __future__ import annotations

from django.db import transaction

from accounts.roles import RELEASE_MANAGERS, has_role
from models.models import Checkpoint
from audit.services import deny, records_refusals
from models.services import can_submit_to
from releases import access, clock, notifications, selectors
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import Release, StagePublication
from releases.policies_service import current_policy_version

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

ASSESSMENT_FIELDS = {
    "intended_use": "intended use",
    "training_data": "training data",
    "known_hazards": "known hazards",
    "mitigations": "mitigations",
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


def _log(actor, verb: str, release: Release, **data) -> None:
    """The action's one audit event; and the review queue's index, which any action may move."""
    awaiting = ""
    if release.status == S.IN_REVIEW:
        awaiting = "".join(f",{role}" for role in selectors.needed_roles(release)) + ","
    if awaiting != release.awaiting_roles:
        release.awaiting_roles = awaiting
        Release.objects.filter(pk=release.pk).update(awaiting_roles=awaiting)
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


def _missing_assessment(release: Release) -> list[str]:
    return [label for key, label in ASSESSMENT_FIELDS.items()
            if not (release.assessment or {}).get(key)]


def _check_owner(actor, release_or_checkpoint, action: str) -> None:
    checkpoint = getattr(release_or_checkpoint, "checkpoint", release_or_checkpoint)
    if not can_submit_to(actor, checkpoint.family):
        raise deny(actor=actor, action=action, obj=release_or_checkpoint,
                   reason=f"only the owners of {checkpoint.family} may do this")


def _check_ready(checkpoint: Checkpoint) -> None:
    if not checkpoint.is_loadable:
        raise TransitionNotAllowed(f"{checkpoint} is {checkpoint.get_status_display()}: only a "
                                   "ready checkpoint can be reviewed or published")


# --- drafting -----------------------------------------------------------------------------------

@records_refusals
def create_release(*, actor, checkpoint: Checkpoint, assessment: dict | None = None) -> Release:
    """Open a draft release of a ready checkpoint under the current policy version.

    Guard: the actor owns the family; the checkpoint is ready; it has no other open release.
    Side effect: `release.created`.
    """
    _check_owner(actor, checkpoint, "release.create")
    _check_ready(checkpoint)
    cleaned = _clean_assessment(assessment)
    with transaction.atomic():
        Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
        open_release = (Release.objects.filter(checkpoint=checkpoint)
                        .exclude(status__in=[S.REJECTED, S.WITHDRAWN]).first())
        if open_release:
            raise TransitionNotAllowed(f"{checkpoint} already has release {open_release.pk} "
                                       f"({open_release.get_status_display()}); continue that one")
        release = Release.objects.create(
            checkpoint=checkpoint, manifest_digest=checkpoint.manifest_digest,
            policy_version=current_policy_version(), submitted_by=actor, assessment=cleaned)
        _log(actor, "release.created", release, checkpoint=checkpoint.pk,
             manifest_digest=checkpoint.manifest_digest)
    return release


@records_refusals
def update_release(*, actor, release: Release, checkpoint: Checkpoint | None = None,
                   assessment: dict | None = None) -> Release:
    """Change a draft (or a release sent back for changes): its assessment, or its checkpoint.

    Guard: the submitter; status draft or changes requested; a new checkpoint is ready and in the
    same family. A new checkpoint changes the pinned digest, which voids every earlier approval.
    Side effect: `release.updated`. Idempotent: no change, no event.
    """
    with transaction.atomic():
        release = _locked(release)
        if actor.pk != release.submitted_by_id:
            raise deny(actor=actor, action="release.update", obj=release,
                       reason="only the release's submitter may change it")
        if release.status not in (S.DRAFT, S.CHANGES_REQUESTED):
            raise TransitionNotAllowed(f"a release that is {release.get_status_display()} "
                                       "cannot be changed; withdraw it or wait for review")
        changed = {}
        if checkpoint is not None and checkpoint.pk != release.checkpoint_id:
            if checkpoint.family_id != release.checkpoint.family_id:
                raise ReleaseInputError(f"{checkpoint} is in another family than the release")
            _check_ready(checkpoint)
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
        if actor.pk != release.submitted_by_id:
            raise deny(actor=actor, action="release.submit", obj=release,
                       reason="only the release's submitter may submit it")
        if release.status in (S.SUBMITTED, S.EVALUATING, S.IN_REVIEW):
            return release
        if release.status not in (S.DRAFT, S.CHANGES_REQUESTED):
            raise TransitionNotAllowed(f"a release that is {release.get_status_display()} "
                                       "cannot be submitted")
        missing = _missing_assessment(release)
        if missing:
            raise TransitionNotAllowed("fill in the risk assessment first: " + ", ".join(missing))
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
        if actor.pk != release.submitted_by_id and not has_role(actor, RELEASE_MANAGERS):
            raise deny(actor=actor, action="release.request_next_stage", obj=release,
                       reason="only the submitter or a release manager may ask for the next stage")
        if release.status != S.PUBLISHED:
            if release.status in (S.EVALUATING, S.IN_REVIEW, S.APPROVED) and release.current_stage:
                return release
            raise TransitionNotAllowed(f"a release that is {release.get_status_display()} cannot "
                                       "ask for a next stage")
        _seek_next_stage(actor, release, "release.next_stage_requested")
    return release


def _seek_next_stage(actor, release: Release, verb: str) -> None:
    """Pin the current policy, aim at the next stage, and go through evals to review."""
    _check_ready(release.checkpoint)
    _pin_policy_and_target(release)
    _move(release, S.SUBMITTED)
    _route(release)
    release.save(update_fields=["status", "target_stage", "policy_version", "tier", "updated_at"])
    _log(actor, verb, release, stage=release.target_stage, status=release.status,
         tier=release.tier)


def _pin_policy_and_target(release: Release) -> None:
    release.policy_version = current_policy_version()
    policy = release.policy_version.policy
    target = policy.next_stage(release.current_stage or None)
    if target is None:
        raise TransitionNotAllowed(f"{release.current_stage} is the last stage: nothing follows it")
    release.target_stage = target


def _route(release: Release) -> None:
    """From submitted (or evaluating): request what the policy needs, then wait or review."""
    from evaluations.models import EvalRun
    from evaluations.services import EvalRequestError, request_evals

    assessment = selectors.release_tier(release)
    release.tier = assessment.tier.name
    policy = release.policy_version.policy
    required = policy.required_evals(release.target_stage, assessment.tier)
    try:
        runs = request_evals(actor=None, checkpoint=release.checkpoint, eval_names=required)
    except EvalRequestError as exc:
        raise TransitionNotAllowed(f"the policy's evals cannot run: {exc.message}") from None
    pending = [run for run in runs if run.status not in EvalRun.FINISHED]
    to = S.EVALUATING if pending else S.IN_REVIEW
    if release.status != to:
        _move(release, to)
    if to == S.IN_REVIEW:
        # A stage whose rule needs no approvals is approved as soon as its gates pass.
        if _gates_pass_for_approval(release):
            _move(release, S.APPROVED)
            transaction.on_commit(lambda: notifications.approved(release.pk))
        else:
            transaction.on_commit(lambda: notifications.waiting_for_review(release.pk))


def refresh_release(*, release_id: int) -> Release:
    """Called when an eval of the release's bytes finishes: leave `evaluating` once nothing the
    policy requires is still running (the tier may have risen, requiring more). System action;
    one `release.in_review` event when it moves, none otherwise."""
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(pk=release_id).first()
        if release is None or release.status != S.EVALUATING:
            return release
        before = release.status
        _route(release)
        if release.status == before:
            release.save(update_fields=["tier", "updated_at"])
            return release
        release.save(update_fields=["status", "tier", "updated_at"])
        _log(None, "release.evaluated", release, stage=release.target_stage, tier=release.tier,
             status=release.status)
    return release


def _gates_pass_for_approval(release: Release) -> bool:
    # Dwell time is checked when the stage is published; approval may come early.
    return all(g.passed for g in selectors.release_gates(release) if g.name != "dwell")


# --- publication and withdrawal -----------------------------------------------------------------

@records_refusals
def publish_release(*, actor, release: Release, stage: str) -> Release:
    """Open `stage` to its audience.

    Guard: a release manager; the release is approved for exactly that stage; every gate passes
    now (the dwell time included). Side effects: the stage's audience can see and download it;
    the history records who published what; mail and webhooks. Idempotent: publishing the
    current stage again changes nothing. One `release.published` event.
    """
    with transaction.atomic():
        release = _locked(release)
        if not has_role(actor, RELEASE_MANAGERS):
            raise deny(actor=actor, action="release.publish", obj=release,
                       reason="publishing a stage needs the release_managers role")
        if release.status == S.PUBLISHED and release.current_stage == stage:
            return release
        if release.status != S.APPROVED:
            raise TransitionNotAllowed(f"a release that is {release.get_status_display()} cannot "
                                       f"be published; it needs approval for {release.target_stage or stage} first")
        if stage != release.target_stage:
            raise TransitionNotAllowed(f"the release is approved for {release.target_stage}, "
                                       f"not {stage}")
        _check_ready(release.checkpoint)
        closed = [g for g in selectors.release_gates(release, stage=stage) if not g.passed]
        if closed:
            raise TransitionNotAllowed("; ".join(g.reason for g in closed))
        now = clock.now()
        _move(release, S.PUBLISHED)
        release.current_stage = stage
        release.stage_entered_at = now
        release.save(update_fields=["status", "current_stage", "stage_entered_at", "updated_at"])
        StagePublication.objects.create(release=release, stage=stage, published_by=actor,
                                        published_at=now, manifest_digest=release.manifest_digest)
        _log(actor, "release.published", release, stage=stage,
             manifest_digest=release.manifest_digest)
    transaction.on_commit(lambda: notifications.published(release.pk))
    return release


@records_refusals
def may_withdraw(user, release: Release) -> bool:
    """A release manager (or superuser) any time; the submitter before anything is published."""
    return has_role(user, RELEASE_MANAGERS) or (
        getattr(user, "pk", None) == release.submitted_by_id and not release.current_stage)


def withdraw_release(*, actor, release: Release, reason: str) -> Release:
    """Withdraw a release: it leaves every audience at once and cannot come back.

    Guard: the submitter (before anything is published), a release manager, or a superuser; a
    reason is required. In the same transaction, every access grant is revoked and every
    pending access request cancelled, counted in the one `release.withdrawn` event; after
    commit, past downloaders are mailed. Idempotent on a withdrawn release.
    """
    reason = (reason or "").strip()
    with transaction.atomic():
        release = _locked(release)
        if release.status == S.WITHDRAWN:
            return release
        if not may_withdraw(actor, release):
            raise deny(actor=actor, action="release.withdraw", obj=release,
                       reason="only a release manager may withdraw a published release")
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
    return release


# Review decisions live in their own module (the state machine is one table, in two files);
# they are imported here so that every workflow action is `workflow.<action>`.
from releases.reviewing import (  # noqa: E402
    approve_release,
    can_review,
    comment_on_release,
    reject_release,
    request_changes,
)

__all__ = ["TRANSITIONS", "TransitionNotAllowed", "approve_release", "can_review",
           "comment_on_release", "create_release", "publish_release", "refresh_release",
           "reject_release", "request_changes", "request_next_stage", "submit_release",
           "update_release", "may_withdraw", "withdraw_release"]
