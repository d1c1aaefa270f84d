"""The release attestation: what was decided when a stage was published, as an in-toto
Statement (https://in-toto.io/Statement/v1) signed in a DSSE envelope (`release.intoto.json`).

`decision_record` is taken inside the publish transition, from the same standing its guard
read, so the attestation states exactly what the decision rested on (not what is true when the
signer runs, after commit). `statement` turns it and the published files into the Statement.
"""

from __future__ import annotations

from releases.models import Release, Review, StagePublication
from releases.policy.quorum import count_quorum
from signing.oms import ATTESTATION_PATH, SIGNATURE_PATH

PREDICATE_TYPE = "https://stagegate.dev/attestations/release/v1"
RESERVED_PATHS = (SIGNATURE_PATH, ATTESTATION_PATH)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def decision_record(*, release: Release, standing, stage: str, actor, now) -> dict:
    """Everything the decision to open `stage` read: the stage and audience, the policy, the
    tier and every gate with the value it read, the approvals that counted, the evals that
    counted, and the bytes (the manifest digest)."""
    policy = release.policy_version.policy
    results = standing.results
    gates = []
    for gate in standing.gates_for(stage):
        entry = {"name": gate.name, "passed": gate.passed, "reason": gate.reason}
        if gate.name.startswith("eval:"):
            _, eval_name, metric = gate.name.split(":")[:3]
            entry["value"] = (results.get(eval_name) or {}).get(metric)
        elif gate.name == "ceiling":
            entry["value"] = release.checkpoint.parameters
        elif gate.name == "dwell":
            entry["value"] = _iso(release.stage_entered_at)
        elif gate.name == "signature":
            entry["value"] = (release.checkpoint.census or {}).get("signature")
        gates.append(entry)
    checkpoint = release.checkpoint
    uploader = checkpoint.submitted_by.username if checkpoint.submitted_by else ""
    rule = standing.rule(stage)
    outcomes = count_quorum(rule.approvals, standing._approvals if stage == release.target_stage
                            else [], submitter=release.submitted_by.username,
                            uploaders=[uploader] if uploader else [])
    approvals = []
    for outcome in outcomes:
        for username in outcome.counted:
            review = (Review.objects.filter(
                release=release, stage=stage, reviewer__username=username,
                decision=Review.Decision.APPROVE, manifest_digest=release.manifest_digest,
                policy_version=release.policy_version).order_by("-created_at").first())
            approvals.append({"reviewer": username, "role": outcome.requirement.role,
                              "at": _iso(review.created_at if review else None)})
    evals = []
    for name, run in sorted(standing.evidence.runs.items()):
        if run is None or run.status != run.Status.SUCCEEDED:
            continue
        evals.append({"eval": name, "version": run.eval_version, "code_hash": run.code_hash,
                      "cache_key": run.cache_key, "run": run.pk,
                      "finished_at": _iso(run.finished_at), "metrics": run.metrics})
    tier = standing.tier
    return {
        "release": release.pk,
        "repo": checkpoint.family.repo_id,
        "checkpoint": {"id": checkpoint.pk, "label": checkpoint.label,
                       "manifest_digest": release.manifest_digest,
                       "submitted_signature": (checkpoint.census or {}).get("signature")
                       or {"status": "unsigned"}},
        "stage": {"name": stage, "audience": policy.stage(stage).audience},
        "policy": {"name": policy.name, "version": policy.version,
                   "content_hash": release.policy_version.content_hash},
        "tier": {"name": tier.tier.name, "reasons": list(tier.reasons)},
        "gates": gates,
        "approvals": approvals,
        "evals": evals,
        "published_by": actor.get_username(),
        "published_at": _iso(now),
    }


def _unrecorded(publication: StagePublication) -> dict:
    """A stage published before decisions were recorded (signed by `sign_publications`): what
    its row says, and that the rest was not recorded."""
    release = publication.release
    policy = release.policy_version.policy
    return {"release": release.pk, "repo": publication.checkpoint.family.repo_id,
            "checkpoint": {"id": publication.checkpoint_id, "label": publication.checkpoint.label,
                           "manifest_digest": publication.manifest_digest},
            "stage": {"name": publication.stage, "audience": policy.stage(publication.stage).audience},
            "tier": {"name": publication.tier, "reasons": []},
            "published_by": publication.published_by.get_username(),
            "published_at": _iso(publication.published_at),
            "decision_recorded": False}


def statement(publication: StagePublication, *, key_id: str) -> dict:
    """The Statement: one subject per published file (sha256), the decision as predicate. The
    two files Stagegate adds itself are not subjects (model.sig covers the rest; this file
    cannot name its own digest); a submitted file at either path is replaced by Stagegate's,
    and still counted in the manifest digest."""
    files = list(publication.checkpoint.files.order_by("path"))
    subjects = [{"name": f.path, "digest": {"sha256": f.blob_id}, "annotations": {"size": f.size}}
                for f in files if f.path not in RESERVED_PATHS]
    # Submitted files at the reserved paths, so a verifier can still recompute the digest.
    replaced = [{"path": f.path, "sha256": f.blob_id, "size": f.size}
                for f in files if f.path in RESERVED_PATHS]
    decision = publication.decision or _unrecorded(publication)
    return {"_type": "https://in-toto.io/Statement/v1", "subject": subjects,
            "predicateType": PREDICATE_TYPE,
            "predicate": {**decision, "manifest_digest": publication.manifest_digest,
                          "signing_key_id": key_id, "replaced_files": replaced,
                          "model_signature": {"path": SIGNATURE_PATH, "format": "OMS v1.0"}}}
