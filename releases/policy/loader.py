"""Policy text in, a checked and frozen `Policy` out, or a PolicyError naming every bad line.

Three passes, each only when the one before found nothing, so one mistake never shows up as
a cascade of confusing follow-on errors: YAML syntax (yamlmarks), shape (schema), meaning
(semantics). Then the plain data is turned into the dataclasses of model.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Collection, Mapping

from releases.policy.errors import PolicyError, PolicyProblem
from releases.policy.model import (
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
from releases.policy.schema import schema_problems
from releases.policy.semantics import Checker
from releases.policy.yamlmarks import parse

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"


def load_policy(text: str, *, source: str = "<policy>",
                known_evals: Mapping[str, Collection[str]] | None = None,
                known_roles: Collection[str] | None = None,
                known_params: Mapping[str, Collection[str]] | None = None) -> Policy:
    """Parse and check a policy. `source` names the text in error messages (a file name).

    `known_evals` ({eval name: metric names or fnmatch patterns}) and `known_roles` are the
    registry's evals and the site's reviewer roles; when given, a policy naming anything else is
    refused, since a misspelt eval would never have a result and would block every release.
    """
    document = parse(text, source=source)
    problems = schema_problems(document)
    if not problems:
        problems = Checker(document, known_evals=known_evals, known_roles=known_roles,
                           known_params=known_params).run()
    if problems:
        raise PolicyError(problems)
    return _build(document.data, text=text, source=source)


def load_policy_file(path: str | Path, **checks: Any) -> Policy:
    """Load a policy file. The bytes are decoded without newline translation, so content_hash
    is the sha256 of the file exactly as stored (what `sha256sum` prints)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([_problem_at_byte(path, exc)]) from None
    return load_policy(text, source=path.name, **checks)


def load_default_policy(**checks: Any) -> Policy:
    return load_policy_file(DEFAULT_POLICY_PATH, **checks)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _problem_at_byte(path: Path, exc: UnicodeDecodeError) -> PolicyProblem:
    before = exc.object[:exc.start]
    line = before.count(b"\n") + 1
    column = exc.start - (before.rfind(b"\n") + 1) + 1
    return PolicyProblem(path.name, line, column, "the policy must be UTF-8 text")


# --- building the model -------------------------------------------------------------------------

def _build(data: dict[str, Any], *, text: str, source: str) -> Policy:
    tiers = _tiers(data["tiers"])
    tier_names = [tier.name for tier in tiers]
    stages = tuple(
        Stage(name=name, audience=stage["audience"].strip(),
              rules=tuple(_rule(name, tier, stage["tiers"][tier]) for tier in tier_names))
        for name, stage in data["stages"].items())
    ceilings = data["ceilings"]
    return Policy(
        name=data["name"], version=data["version"], content_hash=content_hash(text),
        source=source, description=data.get("description", "").strip(),
        ceiling=Ceiling(max_parameters=int(ceilings["max_parameters"]),
                        capability_evals=_thresholds(ceilings.get("capability_evals", []))),
        tiers=tiers, stages=stages,
        evidence=tuple((name, EvidenceRule(
            params=tuple(sorted((rule.get("params") or {}).items())),
            packs=tuple(sorted((rule.get("packs") or {}).items()))))
            for name, rule in sorted((data.get("evidence") or {}).items())),
        converts_pickles=data.get("conversion", {}).get("pytorch_to_safetensors") == "automatic")


def _tiers(items: list[dict]) -> tuple[Tier, ...]:
    tiers, floor = [], 0
    for rank, item in enumerate(items):
        bound = item.get("parameters_below")
        tiers.append(Tier(
            name=item["name"], rank=rank, min_parameters=floor,
            max_parameters=int(bound) if bound is not None else None,
            escalate_when=tuple(EscalationCondition(
                eval=c["eval"], metric=c["metric"], above=_float(c.get("above")),
                below=_float(c.get("below"))) for c in item.get("escalate_when", []))))
        floor = int(bound) if bound is not None else floor
    return tuple(tiers)


def _rule(stage: str, tier: str, item: dict) -> StageRule:
    if item.get("allowed", True) is False:
        return StageRule(stage=stage, tier=tier, allowed=False)
    terms = item.get("terms")
    return StageRule(
        stage=stage, tier=tier, allowed=True,
        required_evals=_thresholds(item.get("required_evals", [])),
        approvals=tuple(ApprovalRequirement(role=a["role"], count=a["count"])
                        for a in item.get("approvals", [])),
        min_dwell_days=item.get("min_dwell_days", 0),
        terms=Terms(licence_version=terms["licence_version"], text=terms.get("text"),
                    url=terms.get("url")) if terms else None,
        # Where nobody wrote down how access is decided, a person decides.
        access=item.get("access", "manual") if stage == "gated" else None,
        form_fields=tuple(FormField(name=f["name"], label=f["label"],
                                    required=f.get("required", True), type=f.get("type", "text"))
                          for f in item.get("form_fields", [])),
        expiry_days=item.get("expiry_days"),
        require_signature=item.get("require_signature", False))


def _thresholds(items: list[dict]) -> tuple[EvalThreshold, ...]:
    return tuple(EvalThreshold(eval=t["eval"], metric=t["metric"], max=_float(t.get("max")),
                               min=_float(t.get("min")),
                               max_above_reference=_float(t.get("max_above_reference")),
                               min_below_reference=_float(t.get("min_below_reference")),
                               reference=t.get("reference")) for t in items)


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
