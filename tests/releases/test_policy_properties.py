"""Properties that must hold for every combination of reviewers, roles and decisions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from releases.policy import ApprovalInput, ApprovalRequirement, load_default_policy
from releases.policy.quorum import count_quorum

DEFAULT = load_default_policy()
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
ROLES = ["safety", "policy", "release_managers"]
EXTERNAL = [("partners", "internal"), ("gated", "partners"), ("open", "gated")]

roles = st.frozensets(st.sampled_from(ROLES), max_size=3)
decisions = st.sampled_from(["approve", "reject", "request_changes"])
approval = st.builds(ApprovalInput, st.sampled_from(PEOPLE), roles, decisions)
approvals = st.lists(approval, max_size=12)
good_metric = st.floats(min_value=0, max_value=1, allow_nan=False)
results = st.fixed_dictionaries({
    "integrity": st.just({"passed": 1.0}),
    "heldout_lm": st.fixed_dictionaries({"bits_per_byte": good_metric}),
    "pairwise_bias": st.fixed_dictionaries({"pct_stereotype_cf": good_metric}),
    "verbatim_extraction": st.fixed_dictionaries({"extractable_rate": st.just(0.0)}),
    "refusal_preference": st.fixed_dictionaries({"refusal_rate": good_metric}),
    "mc_knowledge": st.fixed_dictionaries({"acc_norm": good_metric}),
})
# Above the ceiling: too many parameters, or a capability eval above its threshold or missing.
breach = st.one_of(
    st.tuples(st.integers(min_value=10**15 + 1, max_value=10**18),
              st.sampled_from([{"exposure_max": 0.5}, None])),
    st.tuples(st.integers(min_value=0, max_value=10**15),
              st.one_of(st.none(), st.just({}), st.just({"exposure_max": None}),
                        st.builds(lambda v: {"exposure_max": v},
                                  st.floats(min_value=16.0001, max_value=1e6)))),
)
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(breach=breach, results=results, approvals=approvals,
       submitter=st.sampled_from(PEOPLE), dwell_days=st.integers(0, 10_000))
def test_no_approvals_let_an_above_ceiling_release_into_any_external_stage(
        breach, results, approvals, submitter, dwell_days):
    parameters, canary = breach
    eval_results = {**results, "canary_exposure": canary}
    for stage, current in EXTERNAL:
        gates = DEFAULT.gates_for(
            stage, parameters=parameters, eval_results=eval_results, approvals=approvals,
            submitter=submitter, uploaders=[], current_stage=current,
            entered_current_stage_at=NOW - timedelta(days=dwell_days), now=NOW)
        assert not all(g.passed for g in gates)
        assert any(g.name == "ceiling" and not g.passed for g in gates)


QUORUM_ROLES = ["safety", "policy", "legal"]
requirements = st.lists(
    st.builds(ApprovalRequirement, st.sampled_from(QUORUM_ROLES), st.integers(1, 3)),
    min_size=1, max_size=3, unique_by=lambda r: r.role)
reviewer_roles = st.frozensets(st.sampled_from(QUORUM_ROLES + ["release_managers"]))
reviews = st.lists(st.builds(ApprovalInput, st.sampled_from(PEOPLE), reviewer_roles, decisions),
                   max_size=12)


def passes(outcome) -> bool:
    return outcome.missing <= 0 and not outcome.objections


@FAST
@given(requirements=requirements, reviews=reviews,
       newcomer=st.sampled_from(["aaron", "mia", "zed"]), newcomer_roles=reviewer_roles,
       submitter=st.sampled_from(PEOPLE))
def test_adding_an_approval_never_turns_a_passing_quorum_into_a_failing_one(
        requirements, reviews, newcomer, newcomer_roles, submitter):
    before = count_quorum(requirements, reviews, submitter=submitter, uploaders=[])
    after = count_quorum(requirements, reviews + [ApprovalInput(newcomer, newcomer_roles,
                                                                "approve")],
                         submitter=submitter, uploaders=[])
    if all(passes(o) for o in before):
        assert all(passes(o) for o in after)
    for old, new in zip(before, after):  # and role by role, so no gate flips back to red
        assert not passes(old) or passes(new), (old, new)


@FAST
@given(requirements=requirements, reviews=reviews, submitter=st.sampled_from(PEOPLE),
       uploader=st.sampled_from(PEOPLE))
def test_nobody_counts_twice_and_nobody_counts_for_their_own_work(
        requirements, reviews, submitter, uploader):
    outcomes = count_quorum(requirements, reviews, submitter=submitter, uploaders=[uploader])
    counted = [name for o in outcomes for name in o.counted]
    assert len(counted) == len(set(counted))
    assert submitter not in counted and uploader not in counted
    latest = {a.username: a for a in reviews}
    for o in outcomes:
        assert len(o.counted) <= o.requirement.count
        for name in o.counted:
            assert latest[name].decision == "approve" and o.requirement.role in latest[name].roles
