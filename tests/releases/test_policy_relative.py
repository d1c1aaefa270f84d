"""Relative thresholds in the pure policy engine: the bound is the reference's result moved by
the margin; a reference without a result fails; the policy text is checked for the pairing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from releases.policy import PolicyError, load_policy
from releases.policy.model import ReferenceResults

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def text(threshold: str) -> str:
    return f"""name: t
version: "1"
ceilings:
  max_parameters: 1e15
tiers:
  - name: low
stages:
  internal:
    audience: owners
    tiers:
      low:
        required_evals:
          - {threshold}
"""


RELATIVE = ("{eval: mc_knowledge, metric: acc_norm, max_above_reference: 0.05, "
            "reference: open/base-1b@v1}")


def gate(threshold: str, acc_norm, references):
    policy = load_policy(text(threshold))
    results = {} if acc_norm is None else {"mc_knowledge": {"acc_norm": acc_norm}}
    [found] = [g for g in policy.gates_for("internal", parameters=10, eval_results=results,
                                           approvals=[], submitter="alice", uploaders=[],
                                           current_stage=None, entered_current_stage_at=None,
                                           now=NOW, references=references)
               if g.name.startswith("eval:")]
    return found


def reference(acc_norm):
    return {"open/base-1b@v1": ReferenceResults(
        results={"mc_knowledge": {"acc_norm": acc_norm}} if acc_norm is not None else {},
        problems={} if acc_norm is not None else {"mc_knowledge": "it is queued"})}


def test_at_most_the_margin_above_the_reference_passes_and_both_numbers_are_said():
    passed = gate(RELATIVE, 0.74, reference(0.70))
    assert passed.passed and passed.name == "eval:mc_knowledge:acc_norm:vs:open/base-1b@v1"
    assert "0.74 against 0.70 for the reference open/base-1b@v1" in passed.reason
    assert "so at most 0.75" in passed.reason


def test_more_than_the_margin_above_the_reference_fails():
    closed = gate(RELATIVE, 0.80, reference(0.70))
    assert not closed.passed and closed.reason.startswith("eval mc_knowledge failed: 0.80")


def test_the_bound_moves_with_the_reference():
    assert not gate(RELATIVE, 0.80, reference(0.70)).passed
    assert gate(RELATIVE, 0.80, reference(0.76)).passed


def test_a_reference_without_a_result_or_not_looked_up_fails():
    queued = gate(RELATIVE, 0.10, reference(None))
    assert not queued.passed and "it is queued" in queued.reason
    assert "(mc_knowledge gave 0.1000)" in queued.reason
    assert not gate(RELATIVE, 0.10, {}).passed
    unavailable = {"open/base-1b@v1": ReferenceResults(results={}, problems={},
                                                       unavailable="not marked")}
    assert "(not marked)" in gate(RELATIVE, 0.10, unavailable).reason


def test_a_release_without_its_own_result_fails_and_names_the_reference_value():
    closed = gate(RELATIVE, None, reference(0.70))
    assert not closed.passed and "against the reference open/base-1b@v1 (0.7000" in closed.reason


def test_the_policy_lists_its_references_and_the_evals_they_are_read_for():
    assert load_policy(text(RELATIVE)).references == {"open/base-1b@v1": ("mc_knowledge",)}


@pytest.mark.parametrize("threshold, message", [
    ("{eval: mc_knowledge, metric: acc_norm, max_above_reference: 0.05}", "needs a reference"),
    ("{eval: mc_knowledge, metric: acc_norm, max: 0.5, reference: open/base-1b@v1}",
     "reference only applies to max_above_reference"),
    ("{eval: mc_knowledge, metric: acc_norm, max: 0.5, max_above_reference: 0.05, "
     "reference: open/base-1b@v1}", "has both max and max_above_reference"),
    ("{eval: mc_knowledge, metric: acc_norm, max_above_reference: -0.1, "
     "reference: open/base-1b@v1}", "must be 0 or more"),
    ("{eval: mc_knowledge, metric: acc_norm, max_above_reference: 0.05, reference: base-1b}",
     "must name a checkpoint as org/name@label"),
])
def test_a_relative_threshold_is_checked_where_it_is_written(threshold, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(text(threshold))
