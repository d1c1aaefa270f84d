"""Checks that need more than one value at a time, run once the shape is right (schema.py).

Each check returns problems located at the line to change, worded as what to do about it.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Collection, Iterable, Mapping

from releases.policy.errors import PolicyProblem
from releases.policy.model import LADDER
from releases.policy.yamlmarks import MarkedDocument, Path, format_path

# Keys that only mean something on one stage. A partner grant expires; an access request form
# exists only where strangers ask for access; terms are what someone outside the lab accepts.
ONLY_ON = {"access": ("gated",), "form_fields": ("gated",), "expiry_days": ("partners",),
           "terms": ("partners", "gated", "open")}
BOUNDS = ("max", "min", "max_above_reference", "min_below_reference")
RELATIVE_BOUNDS = ("max_above_reference", "min_below_reference")
REQUIRED_ON = {"terms": ("gated", "open"), "expiry_days": ("partners",)}
LADDER_TEXT = " → ".join(LADDER)


class Checker:
    def __init__(self, document: MarkedDocument, *,
                 known_evals: Mapping[str, Collection[str]] | None,
                 known_roles: Collection[str] | None,
                 known_params: Mapping[str, Collection[str]] | None = None):
        self.document = document
        self.known_evals = known_evals
        self.known_roles = known_roles
        self.known_params = known_params
        self.problems: list[PolicyProblem] = []

    def fail(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.document.problem(path, message, key=key))

    def run(self) -> list[PolicyProblem]:
        data = self.document.data
        self.check_thresholds(("ceilings", "capability_evals"),
                              data["ceilings"].get("capability_evals", []))
        before = len(self.problems)
        tier_names = self.check_tiers(data["tiers"])
        if len(self.problems) > before:
            # Stage rules are keyed by tier name: checking them against broken tiers would
            # bury the one real mistake under follow-on errors.
            return self.problems
        self.check_stages(data["stages"], tier_names)
        self.check_evidence(data)
        return self.problems

    # --- evidence ------------------------------------------------------------------------------

    def check_evidence(self, data: dict) -> None:
        """Evidence may only be declared for evals the policy reads: anything else would pin a
        run that no decision ever looks at (most likely a misspelt eval name)."""
        read = _evals_read(data)
        for name, rule in (data.get("evidence") or {}).items():
            path: Path = ("evidence", name)
            if name not in read:
                self.fail(path, f"evidence.{name}: the policy reads no eval {name} (it reads "
                          f"{', '.join(sorted(read)) or 'none'}); remove it or fix the name",
                          key=True)
                continue
            known = (self.known_params or {}).get(name)
            if known is None:
                continue
            for param in rule.get("params") or {}:
                if param not in known:
                    self.fail(path + ("params", param), f"evidence.{name}.params.{param}: "
                              f"{name} has no parameter {param}; it takes "
                              f"{', '.join(sorted(known)) or 'none'}", key=True)

    # --- tiers ---------------------------------------------------------------------------------

    def check_tiers(self, tiers: list[dict]) -> list[str]:
        names: list[str] = []
        previous_bound: float | None = None
        for index, tier in enumerate(tiers):
            path: Path = ("tiers", index)
            if tier["name"] in names:
                self.fail(path + ("name",), f"{format_path(path)}.name: tier {tier['name']} "
                          "is defined twice")
            names.append(tier["name"])
            bound = tier.get("parameters_below")
            last = index == len(tiers) - 1
            if last and bound is not None:
                self.fail(path + ("parameters_below",),
                          f"{format_path(path)}.parameters_below: {tier['name']} is the highest "
                          "tier, so it must take every model too large for the tiers below; "
                          "remove parameters_below (the ceiling caps size, not a tier)")
            elif not last and bound is None:
                self.fail(path, f"{format_path(path)} needs parameters_below: every tier but "
                          "the highest has an upper bound on the parameter count")
            elif bound is not None and previous_bound is not None and bound <= previous_bound:
                self.fail(path + ("parameters_below",),
                          f"{format_path(path)}.parameters_below must be larger than the tier "
                          "below's: tiers go from low to high")
            previous_bound = bound if bound is not None else previous_bound
            conditions = tier.get("escalate_when", [])
            if index == 0 and conditions:
                self.fail(path + ("escalate_when",),
                          f"{format_path(path)}.escalate_when: {tier['name']} is the lowest "
                          "tier, so nothing can escalate into it; move these conditions to "
                          "the tier they should raise a model to")
            for position, condition in enumerate(conditions):
                where = path + ("escalate_when", position)
                self.check_one_of(where, condition, ("above", "below"))
                self.check_eval_known(where, condition)
        return names

    # --- stages --------------------------------------------------------------------------------

    def check_stages(self, stages: dict[str, dict], tier_names: list[str]) -> None:
        order: list[str] = []
        for name, stage in stages.items():
            path: Path = ("stages", name)
            if name not in LADDER:
                guess = difflib.get_close_matches(name, LADDER, n=1)
                hint = f"did you mean {guess[0]}? " if guess else ""
                self.fail(path, f"stages.{name} is not a stage; {hint}the ladder is "
                          f"{LADDER_TEXT}", key=True)
                continue
            if order and LADDER.index(name) < LADDER.index(order[-1]):
                if order[-1] == "open":
                    why = "open is one-way and must be the last stage"
                else:
                    why = f"stages must follow the ladder {LADDER_TEXT}"
                self.fail(path, f"stages.{name} comes after {order[-1]}: {why}", key=True)
            order.append(name)
            self.check_stage_tiers(name, stage["tiers"], tier_names, first=len(order) == 1)
        self.check_allowed_is_a_prefix(stages, tier_names)

    def check_stage_tiers(self, stage: str, rules: dict[str, dict], tier_names: list[str], *,
                          first: bool) -> None:
        path: Path = ("stages", stage, "tiers")
        misspelt: set[str] = set()
        for tier in rules:
            if tier not in tier_names:
                guess = difflib.get_close_matches(tier, tier_names, n=1)
                hint = f"did you mean {guess[0]}? " if guess else ""
                misspelt.update(guess)
                self.fail(path + (tier,), f"{format_path(path + (tier,))} names an unknown "
                          f"tier; {hint}the tiers are {', '.join(tier_names)}", key=True)
        for tier in tier_names:
            if tier not in rules and tier not in misspelt:  # one typo, one message
                self.fail(path, f"{format_path(path)} has no rule for tier {tier}: say what it "
                          "needs, or write `allowed: false`")
        for tier, rule in rules.items():
            self.check_rule(path + (tier,), stage, rule, first=first)

    def check_rule(self, path: Path, stage: str, rule: dict[str, Any], *, first: bool) -> None:
        where = format_path(path)
        if rule.get("allowed", True) is False:
            for key in rule:
                if key != "allowed":
                    self.fail(path + (key,), f"{where}.{key}: this rule has allowed: false, so "
                              f"{key} would never apply; remove it", key=True)
            return
        for key, stages in ONLY_ON.items():
            if key in rule and stage not in stages:
                self.fail(path + (key,), f"{where}.{key} only applies to the "
                          f"{' and '.join(stages)} stage{'s' if len(stages) > 1 else ''}",
                          key=True)
        for key, stages in REQUIRED_ON.items():
            if stage in stages and key not in rule:
                self.fail(path, f"{where} needs {key}: " + (
                    "people outside the lab must accept a licence before they download"
                    if key == "terms" else "partner access must expire"))
        if first and rule.get("min_dwell_days", 0) > 0:
            self.fail(path + ("min_dwell_days",), f"{where}.min_dwell_days: {stage} is the "
                      "first stage, so there is no previous stage to dwell in; remove it")
        self.check_thresholds(path + ("required_evals",), rule.get("required_evals", []))
        self.check_unique(path + ("approvals",), rule.get("approvals", []), ("role",), "role")
        for index, approval in enumerate(rule.get("approvals", [])):
            if self.known_roles is not None and approval["role"] not in self.known_roles:
                self.fail(path + ("approvals", index, "role"),
                          f"{where}.approvals[{index}].role: no role named {approval['role']}; "
                          f"known roles: {', '.join(sorted(self.known_roles))}")
        self.check_unique(path + ("form_fields",), rule.get("form_fields", []), ("name",),
                          "field name")
        if "terms" in rule:
            self.check_one_of(path + ("terms",), rule["terms"], ("text", "url"))

    def check_allowed_is_a_prefix(self, stages: dict[str, dict], tier_names: list[str]) -> None:
        """A tier barred from a stage can never get past it, so allowing it later is a mistake
        that would otherwise only show as a release stuck forever."""
        ladder = sorted((name for name in stages if name in LADDER), key=LADDER.index)
        for tier in tier_names:
            barred_at = None
            for name in ladder:
                rule = stages[name]["tiers"].get(tier)
                if rule is None:
                    continue
                if rule.get("allowed", True) is False:
                    barred_at = barred_at or name
                elif barred_at:
                    self.fail(("stages", name, "tiers", tier),
                              f"stages.{name}.tiers.{tier} is allowed, but tier {tier} is barred "
                              f"from {barred_at}, so a release can never get here; "
                              "write `allowed: false`", key=True)

    # --- shared --------------------------------------------------------------------------------

    def check_thresholds(self, path: Path, thresholds: list[dict]) -> None:
        self.check_unique(path, thresholds, ("eval", "metric", "reference"), "threshold")
        for index, threshold in enumerate(thresholds):
            self.check_bound(path + (index,), threshold)
            self.check_eval_known(path + (index,), threshold)

    def check_bound(self, path: Path, threshold: dict) -> None:
        """Exactly one bound; a relative bound names its reference, an absolute one none."""
        where = format_path(path)
        given = [key for key in BOUNDS if key in threshold]
        if not given:
            self.fail(path, f"{where} needs a threshold: max or min (or, relative to a "
                            "checkpoint already public, max_above_reference or "
                            "min_below_reference with a reference)")
            return
        if len(given) > 1:
            self.fail(path + (given[1],), f"{where} has both {given[0]} and {given[1]}; give "
                      "one", key=True)
            return
        relative = given[0] in RELATIVE_BOUNDS
        if relative and "reference" not in threshold:
            self.fail(path, f"{where}.{given[0]} needs a reference: the checkpoint already "
                      "public that the value is compared with, as reference: org/name@label")
        elif not relative and "reference" in threshold:
            self.fail(path + ("reference",), f"{where}.reference only applies to "
                      "max_above_reference or min_below_reference; remove it, or make the "
                      f"bound relative", key=True)
        elif relative and threshold[given[0]] < 0:
            self.fail(path + (given[0],), f"{where}.{given[0]} must be 0 or more: it is how "
                      "far past the reference's result the value may go")

    def check_one_of(self, path: Path, item: dict, keys: tuple[str, str]) -> None:
        given = [key for key in keys if key in item]
        where = format_path(path)
        if not given:
            self.fail(path, f"{where} needs a threshold: {keys[0]} or {keys[1]}"
                      if keys[0] in ("max", "above") else f"{where} needs {keys[0]} or {keys[1]}")
        elif len(given) == 2:
            self.fail(path + (keys[1],), f"{where} has both {keys[0]} and {keys[1]}; give one",
                      key=True)

    def check_unique(self, path: Path, items: Iterable[dict], fields: tuple[str, ...],
                     what: str) -> None:
        seen: dict[tuple, int] = {}
        for index, item in enumerate(items):
            identity = tuple(item.get(field) for field in fields)
            if identity in seen:
                self.fail(path + (index,), f"{format_path(path + (index,))}: the {what} "
                          f"{'.'.join(map(str, identity))} is listed twice (also at "
                          f"[{seen[identity]}])")
            seen.setdefault(identity, index)

    def check_eval_known(self, path: Path, item: dict) -> None:
        """Against the eval registry, when the caller has one: a typo in an eval name would
        otherwise read as "no result" forever and block every release."""
        if self.known_evals is None:
            return
        name, metric = item["eval"], item["metric"]
        if name not in self.known_evals:
            guess = difflib.get_close_matches(name, list(self.known_evals), n=1)
            hint = f"did you mean {guess[0]}? " if guess else ""
            self.fail(path + ("eval",), f"{format_path(path)}.eval: no eval named {name}; "
                      f"{hint}known evals: {', '.join(sorted(self.known_evals))}")
            return
        metrics = list(self.known_evals[name])
        if not any(fnmatch.fnmatchcase(metric, pattern) for pattern in metrics):
            guess = difflib.get_close_matches(metric, metrics, n=1)
            hint = f"did you mean {guess[0]}? " if guess else ""
            self.fail(path + ("metric",), f"{format_path(path)}.metric: eval {name} reports no "
                      f"metric {metric}; {hint}it reports {', '.join(metrics)}")


def _evals_read(data: dict) -> set[str]:
    """Every eval name the document's ceilings, tiers and stage rules read."""
    names = {t["eval"] for t in data["ceilings"].get("capability_evals", [])}
    names |= {c["eval"] for tier in data["tiers"] for c in tier.get("escalate_when", [])}
    names |= {t["eval"] for stage in data["stages"].values()
              for rule in stage.get("tiers", {}).values() for t in rule.get("required_evals", [])}
    return names
