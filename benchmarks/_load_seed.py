"""Seed data for benchmarks/load.py, made through the project's own services in a throwaway
instance: an open and a gated repo of tiny safetensors files, erin's grant, tokens, and
releases waiting in the review queue for bob and carol.

    python manage.py shell -c "from benchmarks._load_seed import seed; seed(releases=300)"

Prints one JSON object (tokens, repos, the releases waiting for review) as its last line.
"""

from __future__ import annotations

import json

from benchmarks._publish import ASSESSMENT, PERMISSIVE_POLICY, publish_open

# The permissive policy, except that the first stage needs one safety and one policy approval:
# every release submitted under it waits in the queue for bob and carol, two approvals each.
REVIEW_POLICY = PERMISSIVE_POLICY.replace("name: benchmark-permissive", "name: benchmark-review") \
    .replace("internal: {audience: owners and reviewers, tiers: {low: {}}}",
             "internal:\n    audience: owners and reviewers\n    tiers: {low: {approvals: "
             "[{role: safety, count: 1}, {role: policy, count: 1}]}}")
OPEN_REPO = "bench/open"
GATED_REPO = "bench/gated"
QUEUE_FAMILY = "bench/queue"
FILES = ("model.safetensors", "config.json")


def tiny_safetensors(seed: int, rows: int) -> bytes:
    """A few real tensors, made here with safetensors.torch (nothing downloaded)."""
    import torch
    from safetensors.torch import save

    generator = torch.Generator().manual_seed(seed)
    return save({"embed.weight": torch.randn(rows, 64, generator=generator),
                 "head.bias": torch.zeros(64, dtype=torch.float16)}, metadata={"format": "pt"})


def submit(actor, family: str, label: str, seed: int, rows: int):
    from models import blobstore, services

    staged = [blobstore.stage_chunks("model.safetensors", [tiny_safetensors(seed, rows)])]
    if rows > 16:  # the repos people download from have a config too
        config = json.dumps({"model_type": "bench", "seed": seed}).encode()
        staged.append(blobstore.stage_chunks("config.json", [config]))
    return services.submit_checkpoint(actor=actor, family_name=family, label=label, files=staged)


def seed(*, releases: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.services import create_token
    from releases import access, workflow
    from releases.policies_service import load_policy_version
    from releases.selectors import stage_rule

    call_command("seed_demo", "--no-models", "--quiet")
    users = {u.username: u for u in get_user_model().objects.all()}
    alice, erin = users["alice"], users["erin"]

    # 1 MB of weights in each downloadable repo: small, so the load is requests, not bytes.
    opened = publish_open(submit(alice, OPEN_REPO, "v1", 1, 4096).pk)
    gated = publish_open(submit(alice, GATED_REPO, "v1", 2, 4096).pk, up_to="gated")
    licence = stage_rule(gated, "gated").terms.licence_version
    access.request_access(actor=erin, release=gated, answers={}, licence_version=licence,
                          accept=True)
    assert access.download_access(erin, gated).allowed, "erin has no access to the gated repo"

    load_policy_version(actor=None, text=REVIEW_POLICY, source="benchmark-review.yaml")
    waiting = []
    for i in range(releases):
        checkpoint = submit(alice, QUEUE_FAMILY, f"step{i}", 1000 + i, 8)
        release = workflow.create_release(actor=alice, checkpoint=checkpoint,
                                          assessment=ASSESSMENT)
        release = workflow.submit_release(actor=alice, release=release)
        assert release.status == "in_review", release.status
        waiting.append(release.pk)

    def token(name: str, scope: str) -> str:
        return create_token(actor=users[name], user=users[name], name="load test",
                            scope=scope)[1]

    result = {"open": {"repo": OPEN_REPO, "release": opened.pk, "files": list(FILES)},
              "gated": {"repo": GATED_REPO, "release": gated.pk, "files": list(FILES)},
              "waiting": waiting,
              "tokens": {"erin": token("erin", "read"), "bob": token("bob", "all"),
                         "carol": token("carol", "all"), "alice": token("alice", "submit")}}
    print(json.dumps(result))
    return result


def audit_summary() -> None:
    """What the load test checks afterwards: one JSON line with counts of the audit events."""
    from django.db.models import Count

    from audit.models import AuditEvent

    counts = dict(AuditEvent.objects.values_list("verb").annotate(n=Count("id")))
    print(json.dumps(counts))

