"""Loading policy versions into the database."""

from __future__ import annotations

from django.db import transaction

from accounts.roles import REVIEWER_ROLES
from audit.services import record_event
from releases.models import PolicyVersion
from releases.policy import DEFAULT_POLICY_PATH, content_hash, load_policy



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
    return evals


def load_policy_version(*, actor, text: str, source: str) -> tuple[PolicyVersion, bool]:
    """Validate a policy and store it as a new version (the one new releases get).
    Idempotent: the same text again returns the existing version. Writes `policy.loaded`."""
    policy = load_policy(text, source=source, known_evals=known_evals(),
                         known_roles=REVIEWER_ROLES)
    with transaction.atomic():
        existing = PolicyVersion.objects.filter(content_hash=content_hash(text)).first()
        if existing:
            return existing, False
        version = PolicyVersion.objects.create(
            name=policy.name, version=policy.version, content_hash=policy.content_hash, text=text,
            source=source, loaded_by=actor if getattr(actor, "is_authenticated", False) else None)
        record_event(actor=actor, verb="policy.loaded", obj=version, data={
            "name": policy.name, "version": policy.version, "content_hash": policy.content_hash,
            "source": source})
    return version, True


def current_policy_version() -> PolicyVersion:
    """The newest loaded version; the shipped default is loaded on first use."""
    latest = PolicyVersion.objects.order_by("-loaded_at", "-id").first()
    if latest is not None:
        return latest
    text = DEFAULT_POLICY_PATH.read_bytes().decode("utf-8")
    return load_policy_version(actor=None, text=text, source=DEFAULT_POLICY_PATH.name)[0]
