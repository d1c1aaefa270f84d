"""A parsed policy, as frozen dataclasses. `loader.load_policy` is the only way to make one that
has been checked; the decision methods on `Policy` delegate to `evaluate`.

Collections are tuples, not lists, so a Policy is immutable all the way down: a release pins a
policy version, and nothing the workflow does with it may change what that version says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

from releases.policy.errors import UnknownStage

if TYPE_CHECKING:
    from releases.policy.evaluate import Gate, TierAssessment
    from releases.policy.quorum import ApprovalInput

# The ladder every policy climbs. A policy may leave stages out, never reorder them: the
# workflow's behaviour at each stage (named partners, access requests, anonymous downloads)
# belongs to the stage's name.
LADDER = ("internal", "partners", "gated", "open")
# Stages whose audience is outside the lab: the ceiling applies to every one of them.
EXTERNAL_STAGES = frozenset({"partners", "gated", "open"})
# Published weights cannot be recalled, so nothing follows open and nothing leaves it.
ONE_WAY_STAGES = frozenset({"open"})

EvalResults = Mapping[str, Mapping[str, float | None] | None]


@dataclass(frozen=True)
class ReferenceResults:
    """What a relative threshold reads of its reference checkpoint: its results under the
    same policy's evidence, and, per eval without one, why (or `unavailable` when the reference
    cannot be used at all: not found, or not marked as already public)."""

    results: EvalResults
    problems: Mapping[str, str]
    unavailable: str | None = None


def metric_value(eval_results: EvalResults, eval_name: str, metric: str) -> float | None:
    """The value an eval reported for a metric, or None when there is none to rely on: the eval
    has not run (or failed), the metric is absent, None, NaN, or not a number."""
    metrics = eval_results.get(eval_name)
    if not metrics:
        return None
    value = metrics.get(metric)
    if not isinstance(value, (int, float)):  # bools count: a pass/fail metric may be True
        return None
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class EvalThreshold:
    """A metric that must have a result and be at most `max` (or at least `min`), or, relative
    to a checkpoint already public (`reference`, org/name@label), at most
    `max_above_reference` above its result (at least `min_below_reference` below it: no more
    than that far under). Exactly one bound is set."""

    eval: str
    metric: str
    max: float | None = None
    min: float | None = None
    max_above_reference: float | None = None
    min_below_reference: float | None = None
    reference: str | None = None

    @property
    def is_relative(self) -> bool:
        return self.reference is not None

    @property
    def caps(self) -> bool:
        """True when the bound is an upper one."""
        return self.max is not None or self.max_above_reference is not None

    def limit_for(self, reference_value: float | None = None) -> float | None:
        """The bound itself; for a relative one, the reference's result moved by the margin
        (None without a reference result: nothing to compare with)."""
        if not self.is_relative:
            return self.max if self.max is not None else self.min
        if reference_value is None:
            return None
        if self.max_above_reference is not None:
            return reference_value + self.max_above_reference
        return reference_value - self.min_below_reference  # type: ignore[operator]

    @property
    def limit(self) -> float:
        return self.limit_for()  # type: ignore[return-value]

    @property
    def bound(self) -> Literal["at most", "at least"]:
        return "at most" if self.caps else "at least"

    def passes(self, value: float | None, reference_value: float | None = None) -> bool:
        """A missing value never passes: what was not measured cannot be ruled out; nor does
        a relative bound whose reference has no result."""
        limit = self.limit_for(reference_value)
        if value is None or limit is None:
            return False
        return value <= limit if self.caps else value >= limit


@dataclass(frozen=True)
class EscalationCondition:
    """Puts a model in (at least) the tier that lists it when the metric is above `above` (or
    below `below`), or when the eval has no result."""

    eval: str
    metric: str
    above: float | None = None
    below: float | None = None

    def triggers(self, value: float | None) -> bool:
        if value is None:
            return True  # cannot rule out counts as above
        return value > self.above if self.above is not None else value < self.below  # type: ignore

    def describe(self) -> str:
        if self.above is not None:
            return f"{self.eval}.{self.metric} above {format_number(self.above)}"
        return f"{self.eval}.{self.metric} below {format_number(self.below)}"  # type: ignore


@dataclass(frozen=True)
class Ceiling:
    """What is never published to an external stage, whatever the approvals."""

    max_parameters: int
    capability_evals: tuple[EvalThreshold, ...] = ()


@dataclass(frozen=True)
class Tier:
    """A risk tier. Its parameter range is [min_parameters, max_parameters); the last tier has no
    upper bound. A smaller model still lands here when any escalation condition triggers."""

    name: str
    rank: int  # 0 for the lowest tier
    min_parameters: int
    max_parameters: int | None  # exclusive; None for the last tier
    escalate_when: tuple[EscalationCondition, ...] = ()


@dataclass(frozen=True)
class ApprovalRequirement:
    role: str
    count: int


@dataclass(frozen=True)
class Terms:
    """What a downloader accepts. Exactly one of text and url is set."""

    licence_version: str
    text: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class FormField:
    """One question on the gated access request form."""

    name: str
    label: str
    required: bool = True
    type: Literal["text", "textarea", "email", "url", "checkbox"] = "text"


@dataclass(frozen=True)
class StageRule:
    """What a release of one tier needs to enter one stage."""

    stage: str
    tier: str
    allowed: bool
    required_evals: tuple[EvalThreshold, ...] = ()
    approvals: tuple[ApprovalRequirement, ...] = ()
    min_dwell_days: int = 0  # in the previous stage
    terms: Terms | None = None
    access: Literal["manual", "automatic"] | None = None  # gated only
    form_fields: tuple[FormField, ...] = ()  # gated only
    expiry_days: int | None = None  # partners only: how long a partner's grant lasts
    require_signature: bool = False  # a valid model.sig by a trusted signer of the family


@dataclass(frozen=True)
class Stage:
    name: str
    audience: str
    rules: tuple[StageRule, ...]  # one per tier, in tier order

    @property
    def external(self) -> bool:
        return self.name in EXTERNAL_STAGES

    @property
    def one_way(self) -> bool:
        return self.name in ONE_WAY_STAGES


@dataclass(frozen=True)
class EvidenceRule:
    """Which run of an eval counts: these parameter overrides, these pack versions (name ->
    sha256). The rest is pinned when the policy is loaded (PolicyVersion.evidence)."""

    params: tuple[tuple[str, object], ...] = ()
    packs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    content_hash: str  # sha256 hex of the exact text it was loaded from
    source: str
    description: str
    ceiling: Ceiling
    tiers: tuple[Tier, ...]  # low -> high
    stages: tuple[Stage, ...]  # along the ladder
    # The policy's own word on which run of an eval counts (evidence:), by eval name.
    evidence: tuple[tuple[str, EvidenceRule], ...] = ()
    # conversion.pytorch_to_safetensors: automatic — a PyTorch checkpoint the scanner proves
    # safe is converted to safetensors without anyone asking.
    converts_pickles: bool = False

    def declared_evidence(self) -> dict[str, dict]:
        """{eval: {"params": {...}, "packs": {...}}} as the policy text declares it."""
        return {name: {"params": dict(rule.params), "packs": dict(rule.packs)}
                for name, rule in self.evidence}

    # --- lookups ---------------------------------------------------------------------------

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    @property
    def eval_names(self) -> tuple[str, ...]:
        """Every eval the policy reads anywhere, in policy order: run these on submission and
        no decision waits for a missing result."""
        names = [t.eval for t in self.ceiling.capability_evals]
        names += [c.eval for tier in self.tiers for c in tier.escalate_when]
        names += [t.eval for stage in self.stages for rule in stage.rules
                  for t in rule.required_evals]
        return tuple(dict.fromkeys(names))

    @property
    def thresholds(self) -> tuple[EvalThreshold, ...]:
        return self.ceiling.capability_evals + tuple(
            t for stage in self.stages for rule in stage.rules for t in rule.required_evals)

    @property
    def references(self) -> dict[str, tuple[str, ...]]:
        """{reference checkpoint (org/name@label): the evals its relative thresholds read}."""
        found: dict[str, list[str]] = {}
        for threshold in self.thresholds:
            if threshold.reference is not None:
                names = found.setdefault(threshold.reference, [])
                if threshold.eval not in names:
                    names.append(threshold.eval)
        return {reference: tuple(names) for reference, names in found.items()}

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise UnknownStage(f"policy {self.name} {self.version} has no stage {name!r}; "
                           f"its stages are {' → '.join(self.stage_names)}")

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(f"policy {self.name} {self.version} has no tier {name!r}; "
                       f"its tiers are {', '.join(t.name for t in self.tiers)}")

    def stage_rule(self, stage: str, tier: Tier | str) -> StageRule:
        tier_name = tier.name if isinstance(tier, Tier) else self.tier(tier).name
        return self.stage(stage).rules[self.tier(tier_name).rank]

    def next_stage(self, current: str | None) -> str | None:
        """The stage a release at `current` may enter next: the first stage when it has none,
        None after the last one."""
        if current is None:
            return self.stages[0].name
        index = self.stage_names.index(self.stage(current).name)
        return self.stage_names[index + 1] if index + 1 < len(self.stages) else None

    def previous_stage(self, stage: str) -> str | None:
        index = self.stage_names.index(self.stage(stage).name)
        return self.stage_names[index - 1] if index else None

    # --- decisions (see evaluate.py) ---------------------------------------------------------
    # Imported on call: evaluate.py needs these classes, and a policy is useless without it.

    def assess_tier(self, parameters: int, eval_results: EvalResults,
                    eval_problems: Mapping[str, str] | None = None) -> TierAssessment:
        from releases.policy.evaluate import assess_tier
        return assess_tier(self, parameters, eval_results, eval_problems)

    def tier_for(self, parameters: int, eval_results: EvalResults) -> Tier:
        return self.assess_tier(parameters, eval_results).tier

    def required_evals(self, stage: str, tier: Tier | str) -> list[str]:
        from releases.policy.evaluate import required_evals
        return required_evals(self, stage, tier)

    def gates_for(self, stage: str, *, parameters: int, eval_results: EvalResults,
                  approvals: Sequence[ApprovalInput], submitter: str, uploaders: Sequence[str],
                  current_stage: str | None, entered_current_stage_at: datetime | None,
                  now: datetime, eval_problems: Mapping[str, str] | None = None,
                  references: Mapping[str, ReferenceResults] | None = None,
                  signature: Mapping | None = None) -> list[Gate]:
        from releases.policy.evaluate import gates_for
        return gates_for(self, stage, parameters=parameters, eval_results=eval_results,
                         approvals=approvals, submitter=submitter, uploaders=uploaders,
                         current_stage=current_stage,
                         entered_current_stage_at=entered_current_stage_at, now=now,
                         eval_problems=eval_problems, references=references,
                         signature=signature)


def format_number(value: float, decimals: int = 2) -> str:
    """Numbers as people write them in a policy: 1e15 for parameter counts, 0.20 for rates."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        mantissa, exponent = f"{value:.{decimals}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.{decimals}f}"
