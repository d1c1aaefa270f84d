"""Who counts towards a stage's approval quorum, with separation of duties.

- The submitter and the checkpoint's uploaders never count: nobody reviews their own work.
- One person counts once, however many roles they hold. Each approver fills at most one
  required slot, found as a maximum bipartite matching (people ↔ role slots), so someone holding
  both `safety` and `policy` satisfies one of the two requirements, never both, while the
  matching still finds the assignment that satisfies the most requirements when several people
  hold overlapping roles.
- A `reject` or `request_changes` from someone holding a required role blocks that role's gate
  until they change their decision: a quorum must not be met over a reviewer's objection.
- Each person's latest decision is the one that counts: the caller passes decisions in the
  order they were made, and a later entry for the same username replaces an earlier one.
- A decision counts only through the roles its reviewer still holds: the caller passes the
  roles held when deciding that are still held now, and the ones since lost (`lost_roles`),
  which the gate names ("bob (no longer holds the role safety)").
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence

from releases.policy.model import ApprovalRequirement

Decision = Literal["approve", "reject", "request_changes"]
DECISIONS = ("approve", "reject", "request_changes")


class ApprovalInput(NamedTuple):
    """One reviewer's decision on this release, for this stage, digest and policy version."""

    username: str
    roles: frozenset[str]  # every role the person held when deciding and still holds
    decision: Decision
    comment: str = ""
    lost_roles: frozenset[str] = frozenset()  # held when deciding, not any more


class RoleOutcome(NamedTuple):
    requirement: ApprovalRequirement
    counted: tuple[str, ...]  # usernames assigned to this role's slots
    objections: tuple[ApprovalInput, ...]  # rejections and change requests from this role
    not_counted: tuple[tuple[str, str], ...]  # (username, why) for approvers of this role

    @property
    def missing(self) -> int:
        return self.requirement.count - len(self.counted)


def count_quorum(requirements: Sequence[ApprovalRequirement], approvals: Sequence[ApprovalInput],
                 *, submitter: str, uploaders: Sequence[str]) -> list[RoleOutcome]:
    """Assign approvers to role slots and report, per requirement, who counted and why others
    did not. Deterministic: roles are filled in the policy's order, people in name order."""
    latest: dict[str, ApprovalInput] = {}
    for approval in approvals:
        if approval.decision not in DECISIONS:
            raise ValueError(f"decision of {approval.username} is {approval.decision!r}; "
                             f"expected one of {', '.join(DECISIONS)}")
        latest[approval.username] = approval
    own_work = {submitter: "submitted this release"}
    own_work.update({name: "uploaded this checkpoint" for name in uploaders
                     if name != submitter})

    approvers = sorted(name for name, a in latest.items()
                       if a.decision == "approve" and name not in own_work)
    slots = [req.role for req in requirements for _ in range(req.count)]
    slot_of_person = _match(slots, approvers, latest)
    person_of_slot = {slot: person for person, slot in slot_of_person.items()}

    outcomes, start = [], 0
    for req in requirements:
        counted = tuple(person_of_slot[s] for s in range(start, start + req.count)
                        if s in person_of_slot)
        start += req.count
        objections = tuple(a for name, a in sorted(latest.items())
                           if a.decision != "approve" and name not in own_work
                           and req.role in a.roles)
        not_counted = []
        for name, approval in sorted(latest.items()):
            if (approval.decision == "approve" and req.role in approval.lost_roles
                    and req.role not in approval.roles):
                not_counted.append((name, f"no longer holds the role {req.role}"))
                continue
            if approval.decision != "approve" or req.role not in approval.roles \
                    or name in counted:
                continue
            if name in own_work:
                not_counted.append((name, own_work[name]))
            elif name in slot_of_person:
                elsewhere = slots[slot_of_person[name]]
                not_counted.append((name, f"already counted for role {elsewhere}"))
        outcomes.append(RoleOutcome(req, counted, objections, tuple(not_counted)))
    return outcomes


def _match(slots: list[str], approvers: list[str],
           latest: dict[str, ApprovalInput]) -> dict[str, int]:
    """Maximum bipartite matching by augmenting paths (Kuhn), slots taken in order. A slot, once
    filled, stays filled when a later slot re-routes people, so earlier requirements win ties."""
    slot_of_person: dict[str, int] = {}

    def assign(slot: int, tried: set[str]) -> bool:
        for person in approvers:
            if slots[slot] not in latest[person].roles or person in tried:
                continue
            tried.add(person)
            if person not in slot_of_person or assign(slot_of_person[person], tried):
                slot_of_person[person] = slot
                return True
        return False

    for slot in range(len(slots)):
        assign(slot, set())
    return slot_of_person
