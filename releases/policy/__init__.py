"""The policy engine: release policy as versioned YAML, and the decisions it implies.

Pure Python (no Django, no database), so the workflow, the API, the commands and the tests
share one answer. Typical use:

    policy = load_policy(text, source="default.yaml")       # PolicyError names the bad line
    tier = policy.tier_for(parameters, eval_results)
    gates = policy.gates_for("partners", parameters=..., eval_results=..., approvals=[...],
                             submitter="alice", uploaders=["alice"], current_stage="internal",
                             entered_current_stage_at=..., now=...)
    if all(gate.passed for gate in gates): ...

The format and the reasoning behind the default policy are in docs/policy.md.
"""

from releases.policy.errors import PolicyError, PolicyProblem, UnknownStage
from releases.policy.evaluate import Gate, TierAssessment, failed
from releases.policy.loader import (
    DEFAULT_POLICY_PATH,
    content_hash,
    load_default_policy,
    load_policy,
    load_policy_file,
)
from releases.policy.model import (
    EXTERNAL_STAGES,
    LADDER,
    ApprovalRequirement,
    Ceiling,
    EscalationCondition,
    EvalThreshold,
    EvidenceRule,
    FormField,
    Policy,
    Stage,
    StageRule,
    Terms,
    Tier,
)
from releases.policy.quorum import ApprovalInput

__all__ = [
    "DEFAULT_POLICY_PATH", "EXTERNAL_STAGES", "LADDER", "ApprovalInput", "ApprovalRequirement",
    "Ceiling", "EscalationCondition", "EvalThreshold", "EvidenceRule", "FormField", "Gate", "Policy",
    "PolicyError", "PolicyProblem", "Stage", "StageRule", "Terms", "Tier", "TierAssessment",
    "UnknownStage", "content_hash", "failed", "load_default_policy", "load_policy",
    "load_policy_file",
]
