"""A release's standing: everything a decision about it reads, computed once.

One selector (`release_standing`) answers, for one release and one user: the stage sought, the
evidence (the runs the pinned policy counts) and the tier, the gates, the roles still needed,
the required evals that failed, and for every action whether this user may take it now and,
if not, why. The workflow's guards, the pages, the serializers, the notifications and the
review queue all read it, so a page never offers what the service refuses, and says why a
button is missing.

A standing is a value, computed when asked for: the workflow computes it once per
transaction (under the release's row lock) and the pages once per request, and pass it on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from accounts.roles import RELEASE_MANAGERS, REVIEWER_ROLES, has_role, user_roles
from evaluations.selectors import Evidence, evidence
from releases import clock
from releases.models import Release, Review
from releases.policy import ApprovalInput, Gate
from releases.policy.evaluate import TierAssessment

S = Release.Status

# How a refused action is answered: permission (403, audited as a refusal), state (409),
# noop (the action is already done: the service returns the release unchanged).
PERMISSION, STATE, NOOP = "permission", "state", "noop"
ASSESSMENT_FIELDS = {
    "intended_use": "intended use",
    "training_data": "training data",
    "known_hazards": "known hazards",
    "mitigations": "mitigations",
}


@dataclass(frozen=True)
class Verdict:
    """May this user take this action now? `reason` says why not (or, for a noop, what is
    already so), in words a person can act on."""

    allowed: bool
    reason: str = ""
    refusal: str = ""  # PERMISSION | STATE | NOOP when not allowed

    def __bool__(self) -> bool:
        return self.allowed


OK = Verdict(True)


def _no(refusal: str, reason: str) -> Verdict:
    return Verdict(False, reason, refusal)


def _first(verdict: Verdict, then) -> Verdict:
    """`verdict` when it refuses, else the next check's."""
    return verdict if not verdict else then()


def release_evidence(release: Release) -> Evidence:
    """The runs the release's pinned policy counts for its bytes."""
    return evidence(release.checkpoint, release.policy_version.evidence_spec,
                    list(release.policy_version.policy.eval_names))


def approval_inputs(release: Release, stage: str | None = None) -> list[ApprovalInput]:
    """Reviews for `stage` (default: the stage sought) that still bind (the same bytes and
    policy), each through the roles its reviewer held when deciding and still holds now. An
    approval given for one stage never counts toward another."""
    stage = stage or release.target_stage
    inputs = []
    for review in release.reviews.select_related("reviewer"):
        if (review.decision == Review.Decision.COMMENT or review.stage != stage
                or review.manifest_digest != release.manifest_digest
                or review.policy_version_id != release.policy_version_id):
            continue
        given = frozenset(review.roles)
        held = _roles_now(review.reviewer)
        inputs.append(ApprovalInput(review.reviewer.username, given & held, review.decision,
                                    review.comment, lost_roles=given - held))
    return inputs


def _roles_now(user) -> frozenset[str]:
    if not user.is_active:
        return frozenset()
    return frozenset(user_roles(user)) | ({"superuser"} if user.is_superuser else frozenset())


@dataclass
class Standing:
    release: Release
    user: object
    now: datetime
    evidence: Evidence = field(repr=False)

    # --- what the policy says -------------------------------------------------------------

    @property
    def policy(self):
        return self.release.policy_version.policy

    @cached_property
    def results(self) -> dict[str, dict]:
        return self.evidence.results()

    @cached_property
    def eval_problems(self) -> dict[str, str]:
        return self.evidence.problems()

    @cached_property
    def references(self) -> dict:
        """{reference checkpoint: its results} for the pinned policy's relative thresholds,
        read under the same evidence spec as the release's own."""
        from releases.references import reference_results

        spec = self.release.policy_version.evidence_spec
        return {reference: reference_results(reference, spec, names)
                for reference, names in self.policy.references.items()}

    @cached_property
    def tier(self) -> TierAssessment:
        return self.policy.assess_tier(self.release.checkpoint.parameters, self.results,
                                       self.eval_problems)

    @cached_property
    def stage(self) -> str | None:
        """The stage the release seeks (or, once published, the one that would follow)."""
        release = self.release
        if release.is_terminal:
            return None
        if release.status == S.PUBLISHED or not release.target_stage:
            return self.policy.next_stage(release.current_stage or None)
        return release.target_stage

    def rule(self, stage: str | None = None):
        return self.policy.stage_rule(stage or self.stage, self.tier.tier)

    def gates_for(self, stage: str) -> list[Gate]:
        release = self.release
        checkpoint = release.checkpoint
        uploader = checkpoint.submitted_by.username if checkpoint.submitted_by else ""
        approvals = self._approvals if stage == release.target_stage else approval_inputs(
            release, stage)
        return self.policy.gates_for(
            stage, parameters=checkpoint.parameters, eval_results=self.results,
            approvals=approvals, submitter=release.submitted_by.username,
            uploaders=[uploader] if uploader else [], current_stage=release.current_stage or None,
            entered_current_stage_at=release.stage_entered_at, now=self.now,
            eval_problems=self.eval_problems, references=self.references,
            signature=(checkpoint.census or {}).get("signature"))

    @cached_property
    def _approvals(self) -> list[ApprovalInput]:
        return approval_inputs(self.release)

    @cached_property
    def gates(self) -> list[Gate]:
        return self.gates_for(self.stage) if self.stage else []

    @property
    def closed_gates(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    @property
    def all_pass(self) -> bool:
        """Every gate to the stage sought is open (dwell time included)."""
        return bool(self.gates) and not self.closed_gates

    @property
    def passes_for_approval(self) -> bool:
        # Dwell time is checked when the stage is published; approval may come early.
        return bool(self.gates) and all(g.passed for g in self.gates if g.name != "dwell")

    @cached_property
    def needed_roles(self) -> list[str]:
        """Roles whose approvals the stage sought still needs."""
        return sorted({g.name.split(":", 1)[1] for g in self.gates
                       if g.name.startswith("approvals:") and not g.passed})

    @cached_property
    def lapsed_approvals(self) -> list[str]:
        """Whose approval stopped counting because they lost a role, in words."""
        return [f"{a.username} (no longer holds the role {', '.join(sorted(a.lost_roles))})"
                for a in self._approvals if a.decision == "approve" and a.lost_roles]

    def review_note(self, review: Review) -> str:
        """'' while a review counts; else why not, in words (the page's review list)."""
        note = review.standing(self.release)
        if note or review.decision == Review.Decision.COMMENT:
            return note
        lapsed = next((a for a in self._approvals if a.username == review.reviewer.username
                       and a.lost_roles and not a.roles), None)
        return (f"not counted: no longer holds the role {', '.join(sorted(lapsed.lost_roles))}"
                if lapsed else "")

    @property
    def required_evals(self) -> list[str]:
        return self.policy.required_evals(self.stage, self.tier.tier) if self.stage else []

    @cached_property
    def failed_evals(self) -> list[dict]:
        """Required evals of the stage sought that failed or errored: [{eval, error}]."""
        failures = self.evidence.failures()
        return [{"eval": name, "status": failures[name].status, "error": failures[name].error,
                 "run": failures[name].pk}
                for name in self.required_evals if name in failures]

    # --- who may do what ------------------------------------------------------------------

    def reviewer_roles(self, user=None, stage: str | None = None) -> tuple[list[str], str]:
        """(the user's roles that count for the stage, or [] and why none do)."""
        user = user if user is not None else self.user
        release = self.release
        stage = stage or self.stage
        if user.pk in (release.submitted_by_id, release.checkpoint.submitted_by_id):
            return [], "you submitted this release or its checkpoint; someone else must review it"
        needed = sorted({a.role for a in self.rule(stage).approvals})
        mine = sorted(user_roles(user) & set(needed)) or (["superuser"] if user.is_superuser
                                                           else [])
        if not mine:
            roles = " or ".join(needed) if needed else "none (this stage needs no approval)"
            return [], f"reviewing {stage} needs the role {roles}"
        return mine, ""

    def verdict(self, action: str, *, stage: str | None = None) -> Verdict:
        """Whether the standing's user may take `action` (with `stage`, for stage actions)."""
        return getattr(self, f"_may_{action}")(stage)

    @cached_property
    def actions(self) -> dict[str, Verdict]:
        """Every action's verdict for the page (stage actions for the stage sought)."""
        return {name: self.verdict(name) for name in (
            "submit", "update", "approve", "request_changes", "reject", "publish",
            "request_next_stage", "withdraw", "reopen")}

    def _signed_in(self) -> bool:
        return getattr(self.user, "is_authenticated", False)

    def _may_submit(self, stage=None) -> Verdict:
        release = self.release
        if not self._signed_in() or self.user.pk != release.submitted_by_id:
            return _no(PERMISSION, "only the release's submitter may submit it")
        if release.status in (S.SUBMITTED, S.EVALUATING, S.IN_REVIEW):
            return _no(NOOP, "the release is already submitted")
        if release.status not in (S.DRAFT, S.CHANGES_REQUESTED):
            return _no(STATE, f"a release that is {release.get_status_display()} cannot be "
                              "submitted")
        missing = [label for key, label in ASSESSMENT_FIELDS.items()
                   if not (release.assessment or {}).get(key)]
        if missing:
            return _no(STATE, "fill in the risk assessment first: " + ", ".join(missing))
        return self._ready_to_seek()

    def _ready_to_seek(self) -> Verdict:
        checkpoint = self.release.checkpoint
        if not checkpoint.is_loadable:
            return _no(STATE, f"{checkpoint} is {checkpoint.get_status_display()}: only a "
                              "ready checkpoint can be reviewed or published")
        if self.policy_next is None:
            return _no(STATE, f"{self.release.current_stage} is the last stage: nothing "
                              "follows it")
        return OK

    @property
    def policy_next(self) -> str | None:
        from releases.policies_service import current_policy_version

        return current_policy_version().policy.next_stage(self.release.current_stage or None)

    def _may_update(self, stage=None) -> Verdict:
        release = self.release
        if not self._signed_in() or self.user.pk != release.submitted_by_id:
            return _no(PERMISSION, "only the release's submitter may change it")
        if release.status not in (S.DRAFT, S.CHANGES_REQUESTED):
            return _no(STATE, f"a release that is {release.get_status_display()} cannot be "
                              "changed; withdraw it or wait for review")
        return OK

    def may_change_checkpoint(self) -> Verdict:
        """New bytes for a release that has published a stage would reach its audience
        unreviewed: they are a new release instead."""
        if self.release.published_checkpoint_id or self.release.current_stage:
            return _no(STATE, f"release {self.release.pk} has published "
                              f"{self.release.current_stage}, so its bytes can never change; "
                              "open a new release for the new checkpoint (it may name this one "
                              "as the release it supersedes)")
        return OK

    def _review_state(self, stage: str | None, words: str) -> Verdict:
        release = self.release
        if release.status not in (S.IN_REVIEW, S.APPROVED):
            return _no(STATE, f"a release that is {release.get_status_display()} is not under "
                              f"review; it cannot be {words}")
        if stage is not None and stage != release.target_stage:
            return _no(STATE, f"the release is under review for {release.target_stage}, not "
                              f"{stage}")
        return OK

    def _reviewer(self, stage: str | None) -> Verdict:
        if not self._signed_in():
            return _no(PERMISSION, "sign in to review")
        roles, reason = self.reviewer_roles(stage=stage or self.release.target_stage)
        return OK if roles else _no(PERMISSION, reason)

    def _may_approve(self, stage=None) -> Verdict:
        verdict = _first(self._review_state(stage, "approved"), lambda: self._reviewer(stage))
        if not verdict:
            return verdict
        stage = stage or self.release.target_stage
        gates = self.gates if stage == self.stage else self.gates_for(stage)
        closed = [g for g in gates if g.name in ("ceiling", "stage_allowed") and not g.passed]
        if closed:
            return _no(STATE, closed[0].reason)
        mine = [a for a in self._approvals if a.username == self.user.username]
        if mine and mine[-1].decision == "approve" and mine[-1].roles:
            return _no(NOOP, f"your approval of {stage} is already counted")
        return OK

    def _may_request_changes(self, stage=None) -> Verdict:
        if self.release.status == S.CHANGES_REQUESTED:
            return _no(NOOP, "changes are already requested")
        return _first(self._review_state(stage, "sent back"), lambda: self._reviewer(stage))

    def _may_reject(self, stage=None) -> Verdict:
        if self.release.status == S.REJECTED:
            return _no(NOOP, "the release is already rejected")
        return _first(self._review_state(stage, "rejected"), lambda: self._reviewer(stage))

    def _may_publish(self, stage=None) -> Verdict:
        release = self.release
        stage = stage or release.target_stage
        if not has_role(self.user, RELEASE_MANAGERS):
            return _no(PERMISSION, "publishing a stage needs the release_managers role")
        if release.status == S.PUBLISHED and release.current_stage == stage:
            return _no(NOOP, f"{stage} is already published")
        if release.status != S.APPROVED:
            return _no(STATE, f"a release that is {release.get_status_display()} cannot be "
                              f"published; it needs approval for {release.target_stage or stage} "
                              "first")
        if stage != release.target_stage:
            return _no(STATE, f"the release is approved for {release.target_stage}, not {stage}")
        if not release.checkpoint.is_loadable:
            return _no(STATE, f"{release.checkpoint} is "
                              f"{release.checkpoint.get_status_display()}: only a ready "
                              "checkpoint can be reviewed or published")
        closed = self.closed_gates if stage == self.stage else [
            g for g in self.gates_for(stage) if not g.passed]
        if closed:
            return _no(STATE, "; ".join(g.reason for g in closed))
        return OK

    def _may_request_next_stage(self, stage=None) -> Verdict:
        release = self.release
        if not (self._signed_in() and (self.user.pk == release.submitted_by_id
                                       or has_role(self.user, RELEASE_MANAGERS))):
            return _no(PERMISSION, "only the submitter or a release manager may ask for the "
                                   "next stage")
        if release.status != S.PUBLISHED:
            if release.status in (S.EVALUATING, S.IN_REVIEW, S.APPROVED) and release.current_stage:
                return _no(NOOP, f"the release already seeks {release.target_stage}")
            return _no(STATE, f"a release that is {release.get_status_display()} cannot ask for "
                              "a next stage")
        return self._ready_to_seek()

    def _may_withdraw(self, stage=None) -> Verdict:
        release = self.release
        if release.status == S.WITHDRAWN:
            return _no(NOOP, "the release is already withdrawn")
        if not may_withdraw(self.user, release):
            return _no(PERMISSION, "only a release manager may withdraw a published release")
        return OK

    def _may_reopen(self, stage=None) -> Verdict:
        release = self.release
        if not barring(release):
            return _no(STATE, "only the bytes of a rejected release, or of a release withdrawn "
                              "after publication, need reopening")
        if hasattr(release, "reopening"):
            return _no(NOOP, "these bytes were already reopened")
        if not self._signed_in() or not (any(has_role(self.user, r) for r in REVIEWER_ROLES)
                                         or has_role(self.user, RELEASE_MANAGERS)):
            return _no(PERMISSION, "reopening rejected bytes needs a reviewer role (safety or "
                                   "policy) or release_managers")
        if self.user.pk in (release.submitted_by_id, release.checkpoint.submitted_by_id):
            return _no(PERMISSION, "you submitted this release or its checkpoint; someone else "
                                   "must decide whether its bytes may come back")
        return OK


def may_withdraw(user, release: Release) -> bool:
    """A release manager (or superuser) any time; the submitter before anything is published."""
    return has_role(user, RELEASE_MANAGERS) or (
        getattr(user, "pk", None) == release.submitted_by_id and not release.current_stage)


def barring(release: Release) -> bool:
    """Whether this release bars its bytes from a new release: it was rejected, or withdrawn
    after it had published a stage."""
    return release.status == S.REJECTED or (release.status == S.WITHDRAWN
                                            and bool(release.current_stage))


def release_standing(release: Release, user=None, *, now: datetime | None = None,
                     evidence: Evidence | None = None) -> Standing:
    """The release's standing for `user` (anonymous when None), as the release is now.

    Computed fresh on every call: a caller computes it once and passes it on (the workflow once
    per transaction, a page once per request). `evidence` may be handed over from a standing
    of the same transaction when only reviews or the status changed since."""
    from django.contrib.auth.models import AnonymousUser

    return Standing(release=release, user=user if user is not None else AnonymousUser(),
                    now=now or clock.now(),
                    evidence=evidence if evidence is not None else release_evidence(release))
