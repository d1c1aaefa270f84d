"""Every gate, open and closed, with the exact words a reviewer reads in the gates panel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from releases.policy import ApprovalInput, Gate, UnknownStage, failed, load_policy

POLICY = load_policy("""\
name: gates-test
version: "1"
ceilings:
  max_parameters: 1e15
  capability_evals:
    - {eval: canary_exposure, metric: exposure_max, max: 16}
tiers:
  - name: low
    parameters_below: 1e9
  - name: medium
    parameters_below: 1e11
  - name: high
stages:
  internal:
    audience: Lab.
    tiers: {low: {}, medium: {}, high: {}}
  partners:
    audience: Partners.
    tiers:
      low: {approvals: [{role: safety, count: 1}], expiry_days: 90}
      medium:
        required_evals:
          - {eval: toxicity_probe, metric: score, max: 0.2}
          - {eval: refusal_preference, metric: refusal_rate, min: 0.5}
        approvals: [{role: safety, count: 1}]
        expiry_days: 90
      high: {approvals: [{role: safety, count: 1}], expiry_days: 30}
  gated:
    audience: Approved access requests.
    tiers:
      low: &gated
        approvals: [{role: safety, count: 1}, {role: policy, count: 1}]
        min_dwell_days: 7
        terms: {licence_version: research-1, text: Research only.}
      medium: {<<: *gated, min_dwell_days: 90}
      high: {<<: *gated, min_dwell_days: 180}
  open:
    audience: Anyone.
    tiers:
      low:
        approvals: [{role: safety, count: 2}, {role: policy, count: 1}]
        min_dwell_days: 7
        terms: {licence_version: apache-2.0, url: "https://www.apache.org/licenses/LICENSE-2.0"}
      medium: {allowed: false}
      high: {allowed: false}
""", source="gates.yaml")

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
SMALL, MEDIUM, LARGE = 124_000_000, 5_000_000_000, 200_000_000_000
CLEAN = {"canary_exposure": {"exposure_max": 2.0}, "toxicity_probe": {"score": 0.12},
         "refusal_preference": {"refusal_rate": 0.8}}


def bob(decision="approve", comment=""):
    return ApprovalInput("bob", frozenset({"safety"}), decision, comment)


def carol(decision="approve", comment=""):
    return ApprovalInput("carol", frozenset({"policy"}), decision, comment)


def gates(stage, *, parameters=SMALL, results=CLEAN, approvals=(), current="internal",
          entered=NOW - timedelta(days=365), now=NOW, submitter="alice", uploaders=("alice",)):
    return POLICY.gates_for(stage, parameters=parameters, eval_results=results,
                            approvals=list(approvals), submitter=submitter,
                            uploaders=list(uploaders), current_stage=current,
                            entered_current_stage_at=entered, now=now)


def gate(name, stage, **kwargs) -> Gate:
    found = [g for g in gates(stage, **kwargs) if g.name == name]
    assert len(found) == 1, f"expected one {name} gate, got {found}"
    return found[0]


def test_every_gate_passes_for_a_clean_release_with_its_quorum():
    result = gates("partners", approvals=[bob()])
    assert [g.name for g in result] == ["ceiling", "stage_allowed", "ladder_order",
                                        "approvals:safety"]
    assert failed(result) == []


def test_the_gates_come_in_reading_order():
    result = gates("open", current="gated", approvals=[bob()])
    assert [g.name for g in result] == ["ceiling", "stage_allowed", "ladder_order",
                                        "one_way_open", "approvals:safety", "approvals:policy",
                                        "dwell"]


# --- ceiling -------------------------------------------------------------------------------------

def test_the_ceiling_gate_passes_within_the_ceiling():
    assert gate("ceiling", "partners") == Gate(
        "ceiling", True, "within the ceiling: 1.24e8 parameters, at most 1e15 and every "
                         "capability eval within its threshold")


def test_the_ceiling_gate_fails_above_the_parameter_ceiling():
    assert gate("ceiling", "partners", parameters=2 * 10**15, approvals=[bob()]) == Gate(
        "ceiling", False, "above the ceiling of 1e15 parameters: never published")


def test_the_ceiling_gate_fails_when_a_capability_eval_is_above_its_threshold():
    results = {**CLEAN, "canary_exposure": {"exposure_max": 17.5}}
    assert gate("ceiling", "partners", results=results).reason == (
        "eval canary_exposure failed threshold 16.00 with 17.50 (exposure_max must be at most "
        "16.00): above the ceiling, never published")


def test_the_ceiling_gate_fails_when_a_capability_eval_has_no_result():
    results = {**CLEAN, "canary_exposure": None}
    assert gate("ceiling", "partners", results=results).reason == (
        "eval canary_exposure has no result: cannot rule out, counts as above threshold: above "
        "the ceiling, never published")


def test_the_ceiling_does_not_apply_inside_the_lab():
    result = gates("internal", parameters=2 * 10**15, current=None, entered=None)
    assert "ceiling" not in [g.name for g in result]
    assert failed(result) == []


# --- stage_allowed -------------------------------------------------------------------------------

def test_stage_allowed_passes_and_says_why_the_tier_is_what_it_is():
    assert gate("stage_allowed", "partners") == Gate(
        "stage_allowed", True, "tier low may be released to partners (1.24e8 parameters, "
                               "below 1e9)")


def test_stage_allowed_fails_for_a_tier_the_policy_never_opens():
    assert gate("stage_allowed", "open", parameters=LARGE, current="gated") == Gate(
        "stage_allowed", False, "tier high may never be opened (2e11 parameters, 1e11 or more)")


# --- ladder_order --------------------------------------------------------------------------------

def test_ladder_order_passes_for_the_next_stage():
    assert gate("ladder_order", "partners").reason == "partners follows internal"
    assert gate("ladder_order", "internal", current=None).reason == "internal is the first stage"


@pytest.mark.parametrize("stage, current, reason", [
    ("gated", None, "the release is not published yet: it enters internal first"),
    ("open", "partners", "open would skip gated: the release must pass through gated first"),
    ("internal", "gated", "internal is below the current stage gated: releases only move up "
                          "the ladder"),
    ("partners", "partners", "the release is already at partners"),
    ("gated", "open", "open is the last stage: nothing follows it"),
])
def test_ladder_order_fails_off_the_ladder(stage, current, reason):
    assert gate("ladder_order", stage, current=current) == Gate("ladder_order", False, reason)


def test_an_unknown_stage_is_refused_with_the_stages_there_are():
    with pytest.raises(UnknownStage, match="has no stage 'public'"):
        gates("public")
    with pytest.raises(UnknownStage, match="has no stage 'beta'"):
        gates("partners", current="beta")


# --- one_way_open --------------------------------------------------------------------------------

def test_one_way_open_passes_on_the_way_to_open_and_says_it_is_final():
    assert gate("one_way_open", "open", current="gated") == Gate(
        "one_way_open", True, "open is one-way: once published there, the weights cannot be "
                              "recalled")


def test_one_way_open_fails_for_any_move_out_of_open():
    for stage in ("internal", "partners", "gated", "open"):
        assert gate("one_way_open", stage, current="open") == Gate(
            "one_way_open", False, "open is one-way: the weights are public and cannot be "
                                   f"recalled, so the release cannot move to {stage}")


def test_no_one_way_gate_below_open():
    assert "one_way_open" not in [g.name for g in gates("gated", current="partners")]


def test_open_is_the_last_stage():
    assert POLICY.next_stage("open") is None
    assert POLICY.stage("open").one_way and not POLICY.stage("gated").one_way


# --- eval gates ----------------------------------------------------------------------------------

def test_an_eval_gate_passes_at_or_below_its_maximum():
    assert gate("eval:toxicity_probe:score", "partners", parameters=MEDIUM) == Gate(
        "eval:toxicity_probe:score", True,
        "eval toxicity_probe passed threshold 0.20 with 0.12 (score must be at most 0.20)")
    at_limit = {**CLEAN, "toxicity_probe": {"score": 0.2}}
    assert gate("eval:toxicity_probe:score", "partners", parameters=MEDIUM,
                results=at_limit).passed


def test_an_eval_gate_fails_above_its_maximum():
    results = {**CLEAN, "toxicity_probe": {"score": 0.34}}
    assert gate("eval:toxicity_probe:score", "partners", parameters=MEDIUM,
                results=results).reason == (
        "eval toxicity_probe failed threshold 0.20 with 0.34 (score must be at most 0.20)")


def test_an_eval_gate_fails_below_its_minimum():
    results = {**CLEAN, "refusal_preference": {"refusal_rate": 0.31}}
    assert gate("eval:refusal_preference:refusal_rate", "partners", parameters=MEDIUM,
                results=results) == Gate(
        "eval:refusal_preference:refusal_rate", False,
        "eval refusal_preference failed threshold 0.50 with 0.31 (refusal_rate must be at "
        "least 0.50)")


def test_an_eval_without_a_result_cannot_rule_out_and_fails():
    results = {**CLEAN, "toxicity_probe": None}
    assert gate("eval:toxicity_probe:score", "partners", parameters=MEDIUM,
                results=results).reason == (
        "eval toxicity_probe has no result: cannot rule out, counts as above threshold")
    del results["toxicity_probe"]
    assert not gate("eval:toxicity_probe:score", "partners", parameters=MEDIUM,
                    results=results).passed


def test_an_eval_without_the_metric_names_the_metric():
    results = {**CLEAN, "refusal_preference": {"over_refusal_rate": 0.1}}
    assert gate("eval:refusal_preference:refusal_rate", "partners", parameters=MEDIUM,
                results=results).reason == (
        "eval refusal_preference has no refusal_rate result: cannot rule out, counts as below "
        "threshold")


def test_a_value_close_to_the_threshold_is_shown_with_enough_digits_to_tell_them_apart():
    results = {**CLEAN, "toxicity_probe": {"score": 0.204}}
    assert gate("eval:toxicity_probe:score", "partners", parameters=MEDIUM,
                results=results).reason == (
        "eval toxicity_probe failed threshold 0.200 with 0.204 (score must be at most 0.200)")


# --- approval gates ------------------------------------------------------------------------------

def test_an_approval_gate_passes_with_its_quorum_and_names_who_counted():
    assert gate("approvals:safety", "partners", approvals=[bob()]) == Gate(
        "approvals:safety", True, "approved by bob for role safety")


def test_an_approval_gate_fails_without_its_quorum():
    assert gate("approvals:safety", "partners") == Gate(
        "approvals:safety", False, "needs 1 more approval from role safety")
    assert gate("approvals:safety", "open", current="gated", approvals=[bob()]).reason == \
        "needs 1 more approval from role safety"
    assert gate("approvals:safety", "open", current="gated").reason == \
        "needs 2 more approvals from role safety"


def test_a_rejection_closes_the_gate_with_its_comment():
    frank = ApprovalInput("frank", frozenset({"safety"}), "approve")
    assert gate("approvals:safety", "partners",
                approvals=[frank, bob("reject", "canaries were never registered")]) == Gate(
        "approvals:safety", False, "rejected by bob (safety): canaries were never registered")


def test_a_request_for_changes_closes_the_gate_too():
    assert gate("approvals:policy", "gated", current="partners",
                approvals=[bob(), carol("request_changes")]).reason == \
        "changes requested by carol (policy)"


# --- dwell ---------------------------------------------------------------------------------------

def test_dwell_passes_once_the_time_in_the_previous_stage_is_served():
    assert gate("dwell", "gated", current="partners", entered=NOW - timedelta(days=7)) == Gate(
        "dwell", True, "dwell time: 7 days in partners, 7 required")


def test_dwell_fails_with_the_days_left_and_the_date_it_ends():
    assert gate("dwell", "gated", parameters=MEDIUM, current="partners",
                entered=NOW - timedelta(days=7)) == Gate(
        "dwell", False, "dwell time: 83 days left in partners (until 2026-08-23 12:00 UTC)")


def test_dwell_counts_a_part_day_as_a_day_and_the_last_day_in_hours():
    assert gate("dwell", "gated", current="partners",
                entered=NOW - timedelta(days=5, hours=1)).reason.startswith(
        "dwell time: 2 days left in partners")
    assert gate("dwell", "gated", current="partners",
                entered=NOW - timedelta(days=6, hours=20, minutes=30)).reason == (
        "dwell time: 4 hours left in partners (until 2026-06-01 15:30 UTC)")


def test_dwell_follows_a_controllable_clock():
    entered = datetime(2026, 1, 1, tzinfo=timezone.utc)
    def dwell_at(now):
        return gate("dwell", "gated", parameters=MEDIUM, current="partners", entered=entered,
                    now=now)
    assert not dwell_at(entered + timedelta(days=89, hours=23)).passed
    assert dwell_at(entered + timedelta(days=90)).passed


def test_dwell_fails_when_the_release_is_not_in_the_previous_stage():
    assert gate("dwell", "gated", current="internal").reason == (
        "dwell time: needs 7 days in partners, and the release is not in partners")


def test_dwell_fails_without_a_record_of_entering_the_previous_stage():
    assert gate("dwell", "gated", current="partners", entered=None).reason == (
        "dwell time: no record of when the release entered partners; it needs 7 days there")


def test_dwell_refuses_to_compare_naive_and_aware_times():
    with pytest.raises(ValueError, match="timezone-aware"):
        gates("gated", current="partners", entered=datetime(2026, 1, 1))


def test_no_dwell_gate_where_the_policy_asks_for_none():
    assert "dwell" not in [g.name for g in gates("partners")]
