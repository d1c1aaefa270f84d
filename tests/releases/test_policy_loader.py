"""Loading a policy: the shipped default loads, and every mistake is reported at its line."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from releases.policy import (
    DEFAULT_POLICY_PATH,
    PolicyError,
    load_default_policy,
    load_policy,
    load_policy_file,
)

# A small valid policy. Each mistake below edits one part of it; the line the error must name
# is marked with `#<` in the edit.
VALID = """\
name: test-policy
version: "1"
ceilings:
  max_parameters: 1e15
  capability_evals:
    - {eval: canary_exposure, metric: exposure_max, max: 16}
tiers:
  - name: low
    parameters_below: 1e9
  - name: high
    escalate_when:
      - {eval: canary_exposure, metric: exposure_max, above: 8}
stages:
  internal:
    audience: Lab only.
    tiers:
      low: {}
      high:
        approvals:
          - {role: safety, count: 1}
  partners:
    audience: Named partners.
    tiers:
      low:
        approvals:
          - {role: safety, count: 1}
        expiry_days: 90
      high:
        approvals:
          - {role: safety, count: 1}
        min_dwell_days: 30
        expiry_days: 30
  gated:
    audience: Approved access requests.
    tiers:
      low:
        required_evals:
          - {eval: heldout_lm, metric: bits_per_byte, max: 8}
        approvals:
          - {role: safety, count: 1}
          - {role: policy, count: 1}
        min_dwell_days: 7
        terms: {licence_version: research-1, text: Research only.}
        access: automatic
        form_fields:
          - {name: affiliation, label: Affiliation}
      high:
        allowed: false
  open:
    audience: Anyone.
    tiers:
      low:
        approvals:
          - {role: safety, count: 2}
          - {role: policy, count: 1}
        min_dwell_days: 7
        terms: {licence_version: apache-2.0, url: "https://www.apache.org/licenses/LICENSE-2.0"}
      high:
        allowed: false
"""

KNOWN_EVALS = {"canary_exposure": ["exposure_max", "exposure_mean", "exposure_*"],
               "heldout_lm": ["bits_per_byte", "byte_perplexity"]}


def edit(*pairs: tuple[str, str], text: str = VALID) -> str:
    """VALID with each (old, new) replaced; every `old` must occur exactly once."""
    for old, new in pairs:
        assert text.count(old) == 1, f"edit target not unique: {old!r}"
        text = text.replace(old, new)
    return text


def block(stage: str) -> str:
    """The lines of one stage in VALID, from its name to the next stage (or the end)."""
    start = VALID.index(f"  {stage}:\n")
    following = [VALID.index(f"  {s}:\n") for s in ("partners", "gated", "open")
                 if VALID.index(f"  {s}:\n") > start]
    return VALID[start:min(following) if following else len(VALID)]


def marked_line(text: str) -> int:
    marked = [number for number, line in enumerate(text.splitlines(), 1) if "#<" in line]
    assert len(marked) == 1, "mark exactly one line with #<"
    return marked[0]


THRESHOLD = "          - {eval: heldout_lm, metric: bits_per_byte, max: 8}\n"
GATED_TERMS = "        terms: {licence_version: research-1, text: Research only.}\n"
GATED_HIGH = "      high:\n        allowed: false\n  open:"
GATED, PARTNERS = block("gated"), block("partners")

# case -> (the policy with the offending line marked `#<`, what the message must say)
MISTAKES = {
    "yaml-syntax": (
        edit(("      - {eval: canary_exposure, metric: exposure_max, above: 8}\n",
              "      - {eval: canary_exposure, metric: exposure_max, above: 8\n"),
             ("stages:\n", "stages: #<\n")),
        "not valid YAML"),
    "duplicate-key": (
        edit(("  max_parameters: 1e15\n", "  max_parameters: 1e15\n  max_parameters: 1e12 #<\n")),
        "ceilings.max_parameters is given twice (first on line 4)"),
    "key-that-is-not-text": (
        edit(("  max_parameters: 1e15\n", "  max_parameters: 1e15\n  7: seven #<\n")),
        "ceilings has a key 7 that is not a name; keys must be text"),
    "unknown-key": (
        edit(("tiers:\n  - name: low\n", "tiers:\n  - name: low\n    parameter_below: 1e8 #<\n")),
        "tiers[0].parameter_below is not a key this policy format knows; "
        "did you mean parameters_below?"),
    "approval-count-zero": (
        edit(("          - {role: safety, count: 2}\n",
              "          - {role: safety, count: 0} #<\n")),
        "stages.open.tiers.low.approvals[0].count must be a positive integer"),
    "version-not-text": (
        edit(('version: "1"\n', "version: 1.10 #<\n")),
        'version must be text: quote it, e.g. version: "3"'),
    "ceiling-as-text": (
        edit(("  max_parameters: 1e15\n", "  max_parameters: lots #<\n")),
        "ceilings.max_parameters must be a positive whole number of parameters, like 1e9"),
    "threshold-without-metric": (
        edit((THRESHOLD, "          - {eval: heldout_lm, max: 8} #<\n")),
        "stages.gated.tiers.low.required_evals[0] is missing metric"),
    "threshold-without-bound": (
        edit((THRESHOLD, "          - {eval: heldout_lm, metric: bits_per_byte} #<\n")),
        "stages.gated.tiers.low.required_evals[0] needs a threshold: max or min"),
    "threshold-with-both-bounds": (
        edit((THRESHOLD,
              "          - {eval: heldout_lm, metric: bits_per_byte, max: 8, min: 1} #<\n")),
        "stages.gated.tiers.low.required_evals[0] has both max and min; give one"),
    "eval-name-pattern": (
        edit((THRESHOLD, "          - {eval: Heldout-LM, metric: bits_per_byte, max: 8} #<\n")),
        "stages.gated.tiers.low.required_evals[0].eval must be an eval name like canary_exposure"),
    "non-finite-threshold": (
        edit((THRESHOLD, "          - {eval: heldout_lm, metric: bits_per_byte, max: .inf} #<\n")),
        "stages.gated.tiers.low.required_evals[0].max must be a finite number"),
    "unknown-stage": (
        edit(("  gated:\n", "  gatd: #<\n")),
        "stages.gatd is not a stage; did you mean gated? "
        "the ladder is internal → partners → gated → open"),
    "stage-after-open": (
        edit((GATED, "")) + GATED.replace("  gated:", "  gated: #<", 1),
        "stages.gated comes after open: open is one-way and must be the last stage"),
    "stages-out-of-order": (
        edit((PARTNERS, ""), (GATED, GATED + PARTNERS.replace("  partners:", "  partners: #<", 1))),
        "stages.partners comes after gated: stages must follow the ladder "
        "internal → partners → gated → open"),
    "dwell-on-first-stage": (
        edit(("      low: {}\n", "      low: {min_dwell_days: 3} #<\n")),
        "stages.internal.tiers.low.min_dwell_days: internal is the first stage, so there is no "
        "previous stage to dwell in"),
    "unknown-tier": (
        edit(("      high:\n        approvals:\n          - {role: safety, count: 1}\n  partners:",
              "      hihg: #<\n        approvals:\n          - {role: safety, count: 1}\n"
              "  partners:")),
        "stages.internal.tiers.hihg names an unknown tier; did you mean high?"),
    "missing-tier": (
        edit((GATED_HIGH, "  open:"),
             ("    audience: Approved access requests.\n    tiers:\n",
              "    audience: Approved access requests.\n    tiers: #<\n")),
        "stages.gated.tiers has no rule for tier high: say what it needs, or write "
        "`allowed: false`"),
    "tier-bound-negative": (
        edit(("    parameters_below: 1e9\n", "    parameters_below: -5 #<\n")),
        "tiers[0].parameters_below must be a positive whole number of parameters, like 1e9"),
    "highest-tier-with-bound": (
        edit(("  - name: high\n", "  - name: high\n    parameters_below: 1e12 #<\n")),
        "tiers[1].parameters_below: high is the highest tier"),
    "duplicate-tier": (
        edit(("  - name: high\n", "  - name: low #<\n")),
        "tiers[1].name: tier low is defined twice"),
    "escalation-on-lowest-tier": (
        edit(("    parameters_below: 1e9\n", "    parameters_below: 1e9\n"
              "    escalate_when: [{eval: x, metric: y, above: 1}] #<\n")),
        "tiers[0].escalate_when: low is the lowest tier, so nothing can escalate into it"),
    "allowed-false-with-approvals": (
        edit((GATED_HIGH,
              "      high:\n        allowed: false\n        approvals: [] #<\n  open:")),
        "stages.gated.tiers.high.approvals: this rule has allowed: false, so approvals would "
        "never apply; remove it"),
    "allowed-after-barred": (
        VALID.removesuffix("      high:\n        allowed: false\n")
        + "      high: #<\n        terms: {licence_version: apache-2.0, text: Apache.}\n",
        "stages.open.tiers.high is allowed, but tier high is barred from gated, so a release "
        "can never get here"),
    "access-outside-gated": (
        edit(("        expiry_days: 90\n", "        expiry_days: 90\n        access: manual #<\n")),
        "stages.partners.tiers.low.access only applies to the gated stage"),
    "gated-without-terms": (
        edit((GATED_TERMS, ""), ("    tiers:\n      low:\n        required_evals:",
                                 "    tiers:\n      low: #<\n        required_evals:")),
        "stages.gated.tiers.low needs terms: people outside the lab must accept a licence "
        "before they download"),
    "partners-without-expiry": (
        edit(("        expiry_days: 90\n", ""),
             ("    audience: Named partners.\n    tiers:\n      low:\n",
              "    audience: Named partners.\n    tiers:\n      low: #<\n")),
        "stages.partners.tiers.low needs expiry_days: partner access must expire"),
    "terms-with-text-and-url": (
        edit((GATED_TERMS, "        terms: {licence_version: research-1, text: Research only., "
                           "url: x} #<\n")),
        "stages.gated.tiers.low.terms has both text and url; give one"),
    "duplicate-role": (
        edit(("          - {role: policy, count: 1}\n        min_dwell_days: 7\n        terms: "
              "{licence_version: research-1",
              "          - {role: safety, count: 1} #<\n        min_dwell_days: 7\n        terms: "
              "{licence_version: research-1")),
        "stages.gated.tiers.low.approvals[1]: the role safety is listed twice (also at [0])"),
    "bad-access-mode": (
        edit(("        access: automatic\n", "        access: sometimes #<\n")),
        "stages.gated.tiers.low.access must be manual or automatic"),
    "bad-form-field-type": (
        edit(("          - {name: affiliation, label: Affiliation}\n",
              "          - {name: affiliation, label: Affiliation, type: date} #<\n")),
        "stages.gated.tiers.low.form_fields[0].type must be one of text, textarea, email, url, "
        "checkbox"),
}


def test_the_shipped_default_policy_loads():
    policy = load_default_policy()
    assert policy.name == "stagegate-default"
    assert [tier.name for tier in policy.tiers] == ["low", "medium", "high"]
    assert policy.stage_names == ("internal", "partners", "gated", "open")
    assert policy.ceiling.max_parameters == 10**15


def builtin_eval_metrics() -> dict[str, tuple[str, ...]]:
    """{eval name: metrics} read from each built-in's SPEC without importing it: importing the
    registry imports torch, which costs seconds this pure test has no use for."""
    builtin = Path(__file__).resolve().parents[2] / "evaluations" / "library" / "builtin"
    if not builtin.is_dir():
        pytest.skip("the eval registry is not in this checkout")
    known = {}
    for module in sorted(builtin.glob("[!_]*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "EvalSpec":
                fields = {k.arg: k.value for k in node.keywords}
                known[ast.literal_eval(fields["name"])] = ast.literal_eval(fields["metrics"])
    return known


def test_the_default_policy_names_only_evals_and_metrics_the_registry_knows():
    known = builtin_eval_metrics()
    assert "canary_exposure" in known
    load_default_policy(known_evals=known, known_roles={"safety", "policy"})


def test_the_content_hash_is_the_sha256_of_the_exact_file_bytes():
    policy = load_policy_file(DEFAULT_POLICY_PATH)
    assert policy.content_hash == hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()


def test_any_change_to_the_text_changes_the_content_hash():
    assert load_policy(VALID).content_hash != load_policy(VALID + "# a comment\n").content_hash


def test_parameter_counts_in_scientific_notation_are_numbers():
    policy = load_policy(VALID)
    assert policy.ceiling.max_parameters == 10**15
    assert policy.tiers[0].max_parameters == 10**9 and policy.tiers[1].min_parameters == 10**9


def test_merge_keys_share_a_rule_and_an_explicit_key_overrides_the_merged_one():
    text = VALID.replace("      low: {}\n", "      low: &base {required_evals: "
                         "[{eval: integrity, metric: passed, min: 1}]}\n").replace(
        "      high:\n        approvals:\n          - {role: safety, count: 1}\n  partners:",
        "      high:\n        <<: *base\n        approvals:\n          - {role: safety, "
        "count: 1}\n  partners:")
    rule = load_policy(text).stage_rule("internal", "high")
    assert [t.eval for t in rule.required_evals] == ["integrity"]
    assert rule.approvals[0].role == "safety"


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_is_reported_at_its_line(case):
    text, message = MISTAKES[case]
    line = marked_line(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(text, source="default.yaml")
    first = caught.value.problems[0]
    assert (first.source, first.line) == ("default.yaml", line), str(caught.value)
    assert message in first.message, str(caught.value)
    assert str(caught.value).startswith(f"default.yaml:{line}:")


def test_the_error_message_reads_file_line_column_path_problem():
    text, _ = MISTAKES["approval-count-zero"]
    line = marked_line(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(text, source="default.yaml")
    assert str(caught.value) == (f"default.yaml:{line}:35: stages.open.tiers.low.approvals[0]"
                                 ".count must be a positive integer")


def test_every_mistake_in_a_file_is_reported_at_once():
    text = VALID.replace("count: 2}", "count: 0}").replace("access: automatic", "access: x")
    with pytest.raises(PolicyError) as caught:
        load_policy(text)
    assert len(caught.value.problems) == 2
    assert [p.line for p in caught.value.problems] == sorted(p.line for p in
                                                             caught.value.problems)


def test_an_unknown_eval_is_refused_when_the_registry_is_given():
    text = VALID.replace("{eval: heldout_lm, metric: bits_per_byte, max: 8}",
                         "{eval: heldout_llm, metric: bits_per_byte, max: 8}")
    load_policy(text)  # without a registry any well-formed name is accepted
    with pytest.raises(PolicyError) as caught:
        load_policy(text, known_evals=KNOWN_EVALS)
    assert "no eval named heldout_llm; did you mean heldout_lm?" in str(caught.value)
    assert caught.value.line == 38


def test_an_unknown_metric_is_refused_and_metric_patterns_are_honoured():
    bad = VALID.replace("metric: bits_per_byte", "metric: bits_per_bite")
    with pytest.raises(PolicyError) as caught:
        load_policy(bad, known_evals=KNOWN_EVALS)
    assert "eval heldout_lm reports no metric bits_per_bite; did you mean bits_per_byte?" \
        in str(caught.value)
    per_canary = VALID.replace("metric: exposure_max, max: 16", "metric: exposure_c1, max: 16")
    load_policy(per_canary, known_evals=KNOWN_EVALS)


def test_an_unknown_role_is_refused_when_the_roles_are_given():
    with pytest.raises(PolicyError) as caught:
        load_policy(VALID, known_roles={"safety"})
    assert "no role named policy; known roles: safety" in str(caught.value)


def test_an_empty_file_is_an_error_not_an_empty_policy():
    with pytest.raises(PolicyError, match="<policy>:1:1: the policy is empty"):
        load_policy("# nothing yet\n")


def test_a_list_at_the_top_is_refused_with_its_line():
    with pytest.raises(PolicyError, match=r"^x\.yaml:1:1: the policy must be a mapping"):
        load_policy("- a\n- b\n", source="x.yaml")


def test_a_file_that_is_not_utf8_names_the_line_with_the_bad_byte(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: x\nversion: \"1\xff\"\n")
    with pytest.raises(PolicyError, match=r"^bad\.yaml:2:12: the policy must be UTF-8 text"):
        load_policy_file(path)


def test_an_alias_that_refers_to_itself_is_an_error_not_a_hang():
    with pytest.raises(PolicyError, match=r"^<policy>:1:4: a\[1\] refers to itself through an "
                                          "alias"):
        load_policy("a: &x [1, *x]\n")


def test_aliases_that_expand_without_bound_are_refused():
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    with pytest.raises(PolicyError, match="expands to more than 50000 values"):
        load_policy("\n".join(lines) + "\n")


def test_a_mapping_with_a_merge_key_can_itself_be_aliased():
    # PyYAML flattens merges in place; the second use of the alias must still see `approvals`
    # as one explicit key overriding a merged one, not as a key given twice.
    text = edit(("      low: {}\n",
                 "      low: &rule {<<: {approvals: [{role: policy, count: 1}]}, "
                 "approvals: [{role: safety, count: 1}]}\n"),
                ("      high:\n        approvals:\n          - {role: safety, count: 1}\n"
                 "  partners:", "      high: *rule\n  partners:"))
    policy = load_policy(text)
    for tier in ("low", "high"):
        assert [a.role for a in policy.stage_rule("internal", tier).approvals] == ["safety"]


def test_a_python_tag_is_refused_never_constructed():
    with pytest.raises(PolicyError, match=r"^<policy>:1:7: not valid YAML: could not determine "
                                          "a constructor for the tag"):
        load_policy("name: !!python/name:os.system ''\n")
    with pytest.raises(PolicyError, match=r"^<policy>:1:7: name has the tag "
                                          r"tag:yaml.org,2002:python/object/apply:os.system; a "
                                          "policy uses plain YAML"):
        load_policy("name: !!python/object/apply:os.system [echo owned]\n")
