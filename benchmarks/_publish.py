"""Take a benchmark checkpoint up the ladder to `open` through the release services.

Run inside a throwaway instance only (benchmarks/download.py makes one): it loads a permissive
policy, with no evals, approvals or dwell time, as that instance's current policy, so that the
benchmark measures downloads rather than review. The steps are the ones people take:
alice submits, dave publishes each stage.

    python manage.py shell -c "from benchmarks._publish import publish_open; publish_open(ID)"
"""

from __future__ import annotations

PERMISSIVE_POLICY = """\
name: benchmark-permissive
version: "1"
description: Benchmarks only (no evals, approvals or dwell time). Never load it in a real instance.
ceilings:
  max_parameters: 1e15
tiers:
  - name: low
stages:
  internal: {audience: owners and reviewers, tiers: {low: {}}}
  partners:
    audience: named partners
    tiers: {low: {expiry_days: 30, terms: {licence_version: bench-1, text: Benchmark only.}}}
  gated:
    audience: approved users
    tiers: {low: {access: automatic, terms: {licence_version: bench-1, text: Benchmark only.}}}
  open:
    audience: anyone
    tiers: {low: {terms: {licence_version: bench-1, text: Benchmark only.}}}
"""

ASSESSMENT = {"intended_use": "download benchmark", "training_data": "random bytes",
              "known_hazards": "none: the weights are noise", "mitigations": "none needed"}


def publish_open(checkpoint_id: int, *, submitter: str = "alice", publisher: str = "dave",
                 up_to: str = "open"):
    from django.contrib.auth import get_user_model

    from models.models import Checkpoint
    from releases import workflow
    from releases.models import Release
    from releases.policies_service import load_policy_version

    users = get_user_model().objects
    alice, dave = users.get(username=submitter), users.get(username=publisher)
    load_policy_version(actor=None, text=PERMISSIVE_POLICY, source="benchmark-permissive.yaml")
    checkpoint = Checkpoint.objects.get(pk=checkpoint_id)
    release = workflow.create_release(actor=alice, checkpoint=checkpoint, assessment=ASSESSMENT)
    workflow.submit_release(actor=alice, release=release)
    ladder = ("internal", "partners", "gated", "open")
    for stage in ladder[: ladder.index(up_to) + 1]:
        release = Release.objects.get(pk=release.pk)
        if stage != "internal":
            workflow.request_next_stage(actor=alice, release=release)
            release = Release.objects.get(pk=release.pk)
        # With nothing to wait for, the policy approves each stage as soon as it is asked for.
        assert release.status == Release.Status.APPROVED, (stage, release.status)
        workflow.publish_release(actor=dave, release=release, stage=stage)
    release = Release.objects.get(pk=release.pk)
    print(f"release {release.pk} is {release.status} at {release.current_stage}")
    return release
