"""Loading policy versions into the database, with the evidence each pins."""

from __future__ import annotations

from django.db import transaction

from accounts.roles import REVIEWER_ROLES
from audit.services import record_event
from releases.models import PolicyVersion
from releases.policy import (DEFAULT_POLICY_PATH, PolicyError, PolicyProblem, content_hash,
                             load_policy)



def known_params() -> dict[str, list[str]]:
    """Each eval's parameters (a pack eval's `pack` is its own, not the policy's to set)."""
    from evaluations.catalogue import lookup

    params = {}
    for name in known_evals():
        entry = lookup(name)
        params[name] = sorted(set(entry.spec.params) - set(entry.fixed_params))
    return params


def resolve_evidence(policy) -> dict:
    """What counts for each eval the policy reads, pinned now: parameters and pack hashes.
    A PolicyError naming the eval when the policy asks for something that cannot run."""
    from evaluations.library.context import EvalInputError
    from evaluations.planning import resolve_evidence as resolve

    try:
        return resolve(list(policy.eval_names), policy.declared_evidence())
    except EvalInputError as exc:
        raise PolicyError([PolicyProblem(policy.source, 1, 1, str(exc))]) from None


def known_evals() -> dict[str, list[str]]:
    """The registry's evals and their metrics, so a misspelt eval in a policy is refused."""
    from evaluations.library.registry import all_evals
    from evaluations.models import EvalPack
    from evaluations.catalogue import EVAL_FOR_PACK_TYPE

    evals = {name: list(spec.metrics) + list(spec.higher_is_better)
             for name, spec in all_evals().items()}
    for pack in EvalPack.objects.all():
        base = all_evals()[EVAL_FOR_PACK_TYPE[pack.type]]
        evals[pack.name] = list(base.metrics) + list(base.higher_is_better)
    from evaluations.models import HarnessTask

    for task in HarnessTask.objects.order_by("created_at", "id"):
        evals[task.name] = list(task.metrics)  # the newest version's metrics
    return evals


def load_policy_version(*, actor, text: str, source: str) -> tuple[PolicyVersion, bool]:
    """Validate a policy and store it as a new version (the one new releases get).
    Idempotent: the same text again returns the existing version. Writes `policy.loaded`."""
    policy = load_policy(text, source=source, known_evals=known_evals(),
                         known_roles=REVIEWER_ROLES, known_params=known_params())
    existing = PolicyVersion.objects.filter(content_hash=content_hash(text)).first()
    if existing:
        return existing, False
    evidence = resolve_evidence(policy)
    with transaction.atomic():
        existing = PolicyVersion.objects.filter(content_hash=content_hash(text)).first()
        if existing:
            return existing, False
        version = PolicyVersion.objects.create(
            name=policy.name, version=policy.version, content_hash=policy.content_hash, text=text,
            source=source, evidence=evidence,
            loaded_by=actor if getattr(actor, "is_authenticated", False) else None)
        record_event(actor=actor, verb="policy.loaded", obj=version, data={
            "name": policy.name, "version": policy.version, "content_hash": policy.content_hash,
            "source": source, "evidence": evidence})
    return version, True


def current_policy_version() -> PolicyVersion:
    """The newest loaded version; the shipped default is loaded on first use."""
    latest = PolicyVersion.objects.order_by("-loaded_at", "-id").first()
    if latest is not None:
        return latest
    text = DEFAULT_POLICY_PATH.read_bytes().decode("utf-8")
    return load_policy_version(actor=None, text=text, source=DEFAULT_POLICY_PATH.name)[0]
