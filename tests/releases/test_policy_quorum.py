"""Separation of duties in the quorum count: nobody approves their own work, nobody counts twice,
and an objection from a required role holds the release."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from releases.policy import ApprovalInput, ApprovalRequirement, load_default_policy
from releases.policy.quorum import count_quorum

SAFETY_AND_POLICY = [ApprovalRequirement("safety", 1), ApprovalRequirement("policy", 1)]
DEFAULT = load_default_policy()
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def person(name, *roles, decision="approve", comment=""):
    return ApprovalInput(name, frozenset(roles), decision, comment)


def outcome(requirements, approvals, *, submitter="alice", uploaders=("alice",)):
    return {o.requirement.role: o for o in count_quorum(requirements, approvals,
                                                        submitter=submitter,
                                                        uploaders=list(uploaders))}


def approval_gates(approvals, *, stage="gated", submitter="alice", uploaders=("alice",)):
    results = {"canary_exposure": {"exposure_max": 1.0}, "refusal_preference":
               {"refusal_rate": 0.9}, "mc_knowledge": {"acc_norm": 0.3}}
    return {g.name: g for g in DEFAULT.gates_for(
        stage, parameters=10**8, eval_results=results, approvals=approvals,
        submitter=submitter, uploaders=list(uploaders), current_stage="partners",
        entered_current_stage_at=NOW, now=NOW) if g.name.startswith("approvals:")}


def test_the_submitter_never_counts_even_holding_the_role():
    gates = approval_gates([person("alice", "safety"), person("carol", "policy")])
    assert gates["approvals:safety"].reason == (
        "needs 1 more approval from role safety; not counted: alice (submitted this release)")
    assert gates["approvals:policy"].passed


def test_an_uploader_of_the_checkpoint_never_counts():
    gates = approval_gates([person("ursula", "safety"), person("carol", "policy")],
                           uploaders=["alice", "ursula"])
    assert gates["approvals:safety"].reason == (
        "needs 1 more approval from role safety; not counted: ursula (uploaded this checkpoint)")


def test_a_submitters_rejection_does_not_block_and_does_not_count():
    gates = approval_gates([person("alice", "safety", decision="reject"), person("bob", "safety"),
                            person("carol", "policy")])
    assert all(g.passed for g in gates.values())


def test_a_person_with_two_roles_counts_once():
    gates = approval_gates([person("carol", "safety", "policy")])
    assert gates["approvals:safety"].passed
    assert gates["approvals:policy"].reason == (
        "needs 1 more approval from role policy; not counted: carol (already counted for role "
        "safety)")


def test_a_person_with_two_roles_is_placed_where_the_quorum_needs_them():
    # carol could fill either slot; only with carol on policy can bob fill safety.
    for approvals in ([person("carol", "safety", "policy"), person("bob", "safety")],
                      [person("bob", "safety"), person("carol", "safety", "policy")]):
        result = outcome(SAFETY_AND_POLICY, approvals)
        assert result["safety"].counted == ("bob",) and result["policy"].counted == ("carol",)


def test_the_matching_finds_a_full_quorum_whenever_one_exists():
    requirements = [ApprovalRequirement("safety", 2), ApprovalRequirement("policy", 1)]
    approvals = [person("dan", "safety", "policy"), person("eve", "safety", "policy"),
                 person("bob", "safety")]
    result = outcome(requirements, approvals)
    assert sorted(result["safety"].counted + result["policy"].counted) == ["bob", "dan", "eve"]
    assert result["safety"].missing == 0 and result["policy"].missing == 0


def test_the_same_reviewer_approving_twice_counts_once():
    result = outcome([ApprovalRequirement("safety", 2)], [person("bob", "safety")] * 2)
    assert result["safety"].counted == ("bob",) and result["safety"].missing == 1


def test_a_rejection_from_a_required_role_blocks_whatever_else_is_approved():
    gates = approval_gates([person("bob", "safety"), person("frank", "safety"),
                            person("carol", "policy", decision="reject",
                                   comment="licence does not cover the training data")])
    assert gates["approvals:safety"].passed
    assert gates["approvals:policy"].reason == (
        "rejected by carol (policy): licence does not cover the training data")


def test_a_rejection_from_someone_without_a_required_role_does_not_block():
    gates = approval_gates([person("bob", "safety"), person("carol", "policy"),
                            person("dave", "release_managers", decision="reject")])
    assert all(g.passed for g in gates.values())


def test_a_later_decision_replaces_an_earlier_one_from_the_same_person():
    approvals = [person("carol", "policy", decision="request_changes"), person("bob", "safety"),
                 person("carol", "policy")]
    assert all(g.passed for g in approval_gates(approvals).values())
    approvals.append(person("carol", "policy", decision="reject"))
    assert not approval_gates(approvals)["approvals:policy"].passed


def test_approvals_from_people_without_the_role_do_not_count():
    gates = approval_gates([person("dave", "release_managers"), person("erin")])
    assert gates["approvals:safety"].reason == "needs 1 more approval from role safety"


def test_an_unknown_decision_is_a_caller_error():
    with pytest.raises(ValueError, match="decision of bob is 'maybe'"):
        count_quorum(SAFETY_AND_POLICY, [person("bob", "safety", decision="maybe")],
                     submitter="alice", uploaders=[])


def test_approval_inputs_are_plain_tuples():
    assert ApprovalInput("bob", frozenset({"safety"}), "approve") == (
        "bob", frozenset({"safety"}), "approve", "", frozenset())


def test_an_approval_through_a_lost_role_does_not_count_and_says_why():
    bob = ApprovalInput("bob", frozenset(), "approve", lost_roles=frozenset({"safety"}))
    carol = person("carol", "policy")
    safety, policy = count_quorum(SAFETY_AND_POLICY, [bob, carol], submitter="alice",
                                  uploaders=[])
    assert safety.counted == () and safety.missing == 1
    assert safety.not_counted == (("bob", "no longer holds the role safety"),)
    assert policy.counted == ("carol",)


def test_above_the_ceiling_no_external_stage_passes_even_with_everyone_approving():
    everyone = [person(f"reviewer{i}", "safety", "policy") for i in range(10)]
    for stage, current in (("partners", "internal"), ("gated", "partners"), ("open", "gated")):
        gates = DEFAULT.gates_for(
            stage, parameters=2 * 10**15, eval_results={"canary_exposure": {"exposure_max": 1}},
            approvals=everyone, submitter="alice", uploaders=["alice"], current_stage=current,
            entered_current_stage_at=datetime(2020, 1, 1, tzinfo=timezone.utc), now=NOW)
        ceiling = next(g for g in gates if g.name == "ceiling")
        assert ceiling.reason == "above the ceiling of 1e15 parameters: never published"
        assert not ceiling.passed
