"""The decisions the release workflow asks of a policy: which tier a checkpoint is in, which
evals must run, and which gates stand between a release and a stage.

Pure functions over explicit inputs: no database, no clock (`now` is an argument), so the
workflow, the API, the gates panel and the tests all get the same answer from the same facts.

Everything missing counts against the release: an eval without a result cannot rule out what it
measures, so it counts as above a maximum (below a minimum) and escalates the tier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from releases.policy.model import (
    EvalResults,
    EvalThreshold,
    Policy,
    ReferenceResults,
    Stage,
    Tier,
    format_number,
    metric_value,
)
from releases.policy.quorum import ApprovalInput, RoleOutcome, count_quorum

__all__ = ["ApprovalInput", "Gate", "TierAssessment", "assess_tier", "gates_for",
           "required_evals", "failed"]


@dataclass(frozen=True)
class Gate:
    """One condition between a release and a stage. `name` is a stable slug for code and CSS;
    `reason` is for people, and says what to do when the gate is closed."""

    name: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class TierAssessment:
    tier: Tier
    reasons: tuple[str, ...]  # why this tier, in words


def failed(gates: Sequence[Gate]) -> list[Gate]:
    return [gate for gate in gates if not gate.passed]


# --- tiers --------------------------------------------------------------------------------------

def assess_tier(policy: Policy, parameters: int, eval_results: EvalResults,
                eval_problems: Mapping[str, str] | None = None) -> TierAssessment:
    """The highest tier that the parameter count or any escalation condition puts the model in.
    A condition whose eval has no result counts as met; `eval_problems` says why it has none."""
    if parameters < 0:
        raise ValueError(f"parameters must be 0 or more, got {parameters}")
    base = next(tier for tier in policy.tiers
                if tier.max_parameters is None or parameters < tier.max_parameters)
    assessed, reasons = base, [_size_reason(base, parameters)]
    for tier in policy.tiers[base.rank + 1:]:
        triggered = [_condition_reason(c, metric_value(eval_results, c.eval, c.metric),
                                       (eval_problems or {}).get(c.eval))
                     for c in tier.escalate_when
                     if c.triggers(metric_value(eval_results, c.eval, c.metric))]
        if triggered:
            assessed, reasons = tier, triggered
    return TierAssessment(assessed, tuple(reasons))


def format_count(value: int) -> str:
    """Parameter counts: 1e15 when large, 133,184 when small (never 100.00)."""
    return format_number(value) if abs(value) >= 1e6 else f"{int(value):,}"


def _size_reason(tier: Tier, parameters: int) -> str:
    count = f"{format_count(parameters)} parameters"
    if tier.max_parameters is None:
        return f"{count}, {format_count(tier.min_parameters)} or more"
    if tier.min_parameters == 0:
        return f"{count}, below {format_count(tier.max_parameters)}"
    return (f"{count}, from {format_count(tier.min_parameters)} to below "
            f"{format_count(tier.max_parameters)}")


def _condition_reason(condition, value: float | None, problem: str | None = None) -> str:
    if value is None:
        why = f" ({problem})" if problem else ""
        return (f"eval {condition.eval} has no {condition.metric} result{why}: cannot rule out "
                f"{condition.describe()}")
    return f"{condition.describe()} (it is {format_number(value)})"


# --- required evals -----------------------------------------------------------------------------

def required_evals(policy: Policy, stage: str, tier: Tier | str) -> list[str]:
    """Eval names whose results the decision for this stage and tier reads: the ceiling's
    (external stages), the stage rule's, and every tier condition's, since a missing result
    escalates the tier (a tier assessed as high only because results are missing needs exactly
    those evals run to come down). In policy order, each name once."""
    target = policy.stage(stage)
    tier = tier if isinstance(tier, Tier) else policy.tier(tier)
    rule = target.rules[tier.rank]
    names: list[str] = []
    if target.external:
        names += [t.eval for t in policy.ceiling.capability_evals]
    names += [t.eval for t in rule.required_evals]
    names += [c.eval for each in policy.tiers for c in each.escalate_when]
    return list(dict.fromkeys(names))


# --- gates --------------------------------------------------------------------------------------

def gates_for(policy: Policy, stage: str, *, parameters: int, eval_results: EvalResults,
              approvals: Sequence[ApprovalInput], submitter: str, uploaders: Sequence[str],
              current_stage: str | None, entered_current_stage_at: datetime | None,
              now: datetime, eval_problems: Mapping[str, str] | None = None,
              references: Mapping[str, ReferenceResults] | None = None,
              signature: Mapping | None = None) -> list[Gate]:
    """Every gate between a release and `stage`, open or closed, in the order a reviewer reads
    them: the ceiling (external stages), whether the tier may go there, the ladder, the evals,
    the approvals, the dwell time. The release may enter `stage` when all have passed.
    `references` holds what relative thresholds compare with ({org/name@label: its results});
    a reference missing from it, or without a result, fails its threshold."""
    target = policy.stage(stage)
    if current_stage is not None:
        policy.stage(current_stage)  # an unknown current stage is a caller's bug: say so
    problems = eval_problems or {}
    references = references or {}
    assessment = assess_tier(policy, parameters, eval_results, problems)
    rule = target.rules[assessment.tier.rank]

    gates: list[Gate] = []
    if target.external:
        gates.append(_ceiling_gate(policy, parameters, eval_results, problems, references))
    gates.append(_stage_allowed_gate(target, assessment))
    gates.append(_ladder_gate(policy, stage, current_stage))
    if target.one_way or (current_stage is not None and policy.stage(current_stage).one_way):
        gates.append(_one_way_gate(policy, stage, current_stage))
    gates += [_eval_gate(threshold, eval_results, problems, references)
              for threshold in rule.required_evals]
    gates += [_approval_gate(outcome) for outcome in count_quorum(
        rule.approvals, approvals, submitter=submitter, uploaders=uploaders)]
    if rule.require_signature:
        gates.append(_signature_gate(signature or {}))
    if rule.min_dwell_days:
        gates.append(_dwell_gate(policy, stage, rule.min_dwell_days, current_stage,
                                 entered_current_stage_at, now))
    return gates


def _signature_gate(signature: Mapping) -> Gate:
    """`require_signature`: the checkpoint's submitted model.sig, as checked at submission
    against the family's trusted signers (models/provenance.py)."""
    status = signature.get("status", "unsigned")
    if status == "valid":
        return Gate("signature", True, f"signed by {signature.get('signer')} (key "
                                       f"{str(signature.get('key_id'))[:12]}…)")
    if status == "invalid":
        return Gate("signature", False, f"the checkpoint's model.sig is invalid: "
                                        f"{signature.get('reason')}; submit the checkpoint again "
                                        "with a signature by one of the family's trusted signers")
    return Gate("signature", False, "the checkpoint is unsigned, and the policy requires a "
                                    "model.sig by one of the family's trusted signers: sign it "
                                    "(model_signing sign key) and submit it again")


def _ceiling_gate(policy: Policy, parameters: int, eval_results: EvalResults,
                  problems: Mapping[str, str],
                  references: Mapping[str, ReferenceResults]) -> Gate:
    ceiling = policy.ceiling
    closed = []
    if parameters > ceiling.max_parameters:
        closed.append(f"above the ceiling of {format_count(ceiling.max_parameters)} "
                        "parameters: never published")
    for threshold in ceiling.capability_evals:
        value = metric_value(eval_results, threshold.eval, threshold.metric)
        if not threshold.passes(value, reference_value(threshold, references)):
            closed.append(f"{eval_reason(threshold, eval_results, problems, references)}: "
                          "above the ceiling, never published")
    if closed:
        return Gate("ceiling", False, "; ".join(closed))
    evals = " and every capability eval within its threshold" if ceiling.capability_evals else ""
    return Gate("ceiling", True, f"within the ceiling: {format_count(parameters)} parameters, "
                                 f"at most {format_count(ceiling.max_parameters)}{evals}")


def _stage_allowed_gate(target: Stage, assessment: TierAssessment) -> Gate:
    tier = assessment.tier.name
    rule = target.rules[assessment.tier.rank]
    going = "be opened" if target.name == "open" else f"be released to {target.name}"
    because = f" ({'; '.join(assessment.reasons)})"
    if rule.allowed:
        return Gate("stage_allowed", True, f"tier {tier} may {going}{because}")
    return Gate("stage_allowed", False, f"tier {tier} may never {going}{because}")


def _ladder_gate(policy: Policy, stage: str, current: str | None) -> Gate:
    expected = policy.next_stage(current)
    if stage == expected:
        reason = (f"{stage} is the first stage" if current is None
                  else f"{stage} follows {current}")
        return Gate("ladder_order", True, reason)
    order = policy.stage_names
    if current is None:
        reason = f"the release is not published yet: it enters {expected} first"
    elif expected is None:
        reason = f"{current} is the last stage: nothing follows it"
    elif stage == current:
        reason = f"the release is already at {stage}"
    elif order.index(stage) < order.index(current):
        reason = f"{stage} is below the current stage {current}: releases only move up the ladder"
    else:
        skipped = order[order.index(expected):order.index(stage)]
        reason = (f"{stage} would skip {', '.join(skipped)}: the release must pass through "
                  f"{expected} first")
    return Gate("ladder_order", False, reason)


def _one_way_gate(policy: Policy, stage: str, current: str | None) -> Gate:
    if current is not None and policy.stage(current).one_way:
        return Gate("one_way_open", False,
                    f"{current} is one-way: the weights are public and cannot be recalled, so "
                    f"the release cannot move to {stage}")
    return Gate("one_way_open", True,
                f"{stage} is one-way: once published there, the weights cannot be recalled")


def _eval_gate(threshold: EvalThreshold, eval_results: EvalResults,
               problems: Mapping[str, str],
               references: Mapping[str, ReferenceResults] | None = None) -> Gate:
    value = metric_value(eval_results, threshold.eval, threshold.metric)
    name = f"eval:{threshold.eval}:{threshold.metric}"
    if threshold.is_relative:
        name += f":vs:{threshold.reference}"
    return Gate(name, threshold.passes(value, reference_value(threshold, references)),
                eval_reason(threshold, eval_results, problems, references))


def reference_value(threshold: EvalThreshold,
                    references: Mapping[str, ReferenceResults] | None) -> float | None:
    """The reference checkpoint's result a relative threshold compares with (None when there
    is none to rely on, which fails the threshold)."""
    if not threshold.is_relative:
        return None
    reference = (references or {}).get(threshold.reference)  # type: ignore[arg-type]
    if reference is None or reference.unavailable:
        return None
    return metric_value(reference.results, threshold.eval, threshold.metric)


def eval_reason(threshold: EvalThreshold, eval_results: EvalResults,
                problems: Mapping[str, str] | None = None,
                references: Mapping[str, ReferenceResults] | None = None) -> str:
    if threshold.is_relative:
        return _relative_reason(threshold, eval_results, problems, references)
    value = metric_value(eval_results, threshold.eval, threshold.metric)
    if value is None:
        side = "above" if threshold.max is not None else "below"
        what = "no result" if not eval_results.get(threshold.eval) \
            else f"no {threshold.metric} result"
        why = (problems or {}).get(threshold.eval) if not eval_results.get(threshold.eval) else None
        return (f"eval {threshold.eval} has {what}" + (f" ({why})" if why else "")
                + f": cannot rule out, counts as {side} threshold")
    limit, shown = _distinct(threshold.limit, value)
    verdict = "passed" if threshold.passes(value) else "failed"
    return (f"eval {threshold.eval} {verdict} threshold {limit} with {shown} "
            f"({threshold.metric} must be {threshold.bound} {limit})")


def _relative_reason(threshold: EvalThreshold, eval_results: EvalResults,
                     problems: Mapping[str, str] | None,
                     references: Mapping[str, ReferenceResults] | None) -> str:
    """Both numbers, the candidate's and the reference's, and the bound they make."""
    metric, name, ref = threshold.metric, threshold.eval, threshold.reference
    value = metric_value(eval_results, name, metric)
    margin = (threshold.max_above_reference if threshold.caps
              else threshold.min_below_reference)
    relation = (f"at most {format_number(margin)} above" if threshold.caps  # type: ignore[arg-type]
                else f"at most {format_number(margin)} below")  # type: ignore[arg-type]
    rule = f"{metric} must be {relation} the reference {ref}'s"
    reference = (references or {}).get(ref)  # type: ignore[arg-type]
    ref_value = reference_value(threshold, references)
    if ref_value is None:
        if reference is None:
            why = "it was not looked up"
        elif reference.unavailable:
            why = reference.unavailable
        else:
            why = reference.problems.get(name) or f"it has no {metric} result"
        mine = "" if value is None else f" ({name} gave {format_number(value, 4)})"
        return (f"eval {name}: the reference {ref} has no {metric} result to compare with "
                f"({why}){mine}: cannot rule out, counts as failing ({rule})")
    if value is None:
        what = "no result" if not eval_results.get(name) else f"no {metric} result"
        why = (problems or {}).get(name) if not eval_results.get(name) else None
        return (f"eval {name} has {what}" + (f" ({why})" if why else "")
                + f": cannot rule out, counts as failing against the reference {ref} "
                  f"({format_number(ref_value, 4)}; {rule})")
    limit = threshold.limit_for(ref_value)
    shown_limit, shown = _distinct(limit, value)  # type: ignore[arg-type]
    _, shown_ref = _distinct(limit, ref_value)  # type: ignore[arg-type]
    verdict = "passed" if threshold.passes(value, ref_value) else "failed"
    return (f"eval {name} {verdict}: {shown} against {shown_ref} for the reference {ref} "
            f"({rule}, so {threshold.bound} {shown_limit})")


def _distinct(limit: float, value: float) -> tuple[str, str]:
    """Format both with as many decimals as it takes to tell them apart (0.20 vs 0.204)."""
    for decimals in range(2, 7):
        pair = format_number(limit, decimals), format_number(value, decimals)
        if pair[0] != pair[1] or limit == value:
            return pair
    return pair


def _approval_gate(outcome: RoleOutcome) -> Gate:
    role = outcome.requirement.role
    name = f"approvals:{role}"
    if outcome.objections:
        words = [f"{'rejected' if o.decision == 'reject' else 'changes requested'} by "
                 f"{o.username} ({role}){': ' + o.comment.strip() if o.comment.strip() else ''}"
                 for o in outcome.objections]
        return Gate(name, False, "; ".join(words))
    if outcome.missing <= 0:
        return Gate(name, True, f"approved by {', '.join(sorted(outcome.counted))} for role {role}")
    plural = "approval" if outcome.missing == 1 else "approvals"
    reason = f"needs {outcome.missing} more {plural} from role {role}"
    if outcome.not_counted:
        reason += "; not counted: " + ", ".join(f"{who} ({why})"
                                                for who, why in outcome.not_counted)
    return Gate(name, False, reason)


def _dwell_gate(policy: Policy, stage: str, days: int, current: str | None,
                entered: datetime | None, now: datetime) -> Gate:
    previous = policy.previous_stage(stage)
    needed = timedelta(days=days)
    if current != previous:
        return Gate("dwell", False, f"dwell time: needs {days} days in {previous}, and the "
                                    f"release is not in {previous}")
    if entered is None:
        return Gate("dwell", False, f"dwell time: no record of when the release entered "
                                    f"{previous}; it needs {days} days there")
    if (entered.tzinfo is None) != (now.tzinfo is None):
        raise ValueError("entered_current_stage_at and now must both be timezone-aware "
                         "(or both naive)")
    elapsed = now - entered
    if elapsed >= needed:
        return Gate("dwell", True, f"dwell time: {elapsed.days} days in {previous}, "
                                   f"{days} required")
    left, until = needed - elapsed, (entered + needed).strftime("%Y-%m-%d %H:%M %Z").strip()
    if left >= timedelta(days=1):
        count, unit = math.ceil(left / timedelta(days=1)), "day"
    else:
        count, unit = math.ceil(left / timedelta(hours=1)), "hour"
    return Gate("dwell", False, f"dwell time: {count} {unit}{'s' if count != 1 else ''} left "
                                f"in {previous} (until {until})")
