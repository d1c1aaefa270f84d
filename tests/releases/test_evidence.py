"""The evidence is the policy's: a submitter's exploratory runs (other parameters, a pack the
policy does not name) change no tier, gate or ceiling, and so no audience's access; a lab makes
its own pack count by naming it in the policy, pinned by content hash."""

from __future__ import annotations

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import GatedRepoError

from evaluations import runner, services
from evaluations.models import EvalRun
from releases.models import AccessRequest, Release
from releases.policies_service import load_policy_version
from releases.standing import release_standing
from tests.conftest import TINY_TEXTS, token_for
from tests.eval_runs.conftest import submit_folder
from tests.evaluations.corpora import pack_bytes
from tests.releases.stages import release_at

pytestmark = pytest.mark.django_db(transaction=True)


def policy_text(threshold: float, evidence: str = "") -> str:
    """Two tiers: medium when held-out bits per byte are above `threshold`; gated access is
    automatic for low, decided by a person for medium."""
    def rule(tier, stage):
        needs = "        required_evals:\n          - {eval: integrity, metric: passed, min: 1}\n"
        if stage != "internal":
            needs += "        approvals:\n          - {role: safety, count: 1}\n"
        if stage == "partners":
            needs += "        terms: {licence_version: p-1, text: Partners.}\n        expiry_days: 30\n"
        if stage in ("gated", "open"):
            needs += "        terms: {licence_version: r-1, text: Research.}\n"
        if stage == "gated":
            needs += (f"        access: {'automatic' if tier == 'low' else 'manual'}\n"
                      "        form_fields:\n          - {name: affiliation, label: Affiliation}\n")
        return f"      {tier}:\n{needs}"
    stages = "".join(f"  {stage}:\n    audience: {stage}\n    tiers:\n" + rule("low", stage)
                     + rule("medium", stage) for stage in ("internal", "partners", "gated"))
    return (f"name: evidence-test\nversion: \"{threshold}\"\nceilings:\n  max_parameters: 1e15\n"
            "tiers:\n  - name: low\n    parameters_below: 1e12\n  - name: medium\n"
            "    escalate_when:\n"
            f"      - {{eval: heldout_lm, metric: bits_per_byte, above: {threshold}}}\n"
            f"{evidence}stages:\n{stages}")


def upload_known_texts(alice, api_client_for) -> None:
    """alice's own pack: the very texts the model was trained on (it predicts them well)."""
    data = pack_bytes({"name": "lab_known_texts", "version": 1, "type": "scored_text",
                       "description": "texts the model saw", "licence": "CC0-1.0"},
                      [{"id": f"t{i}", "text": text} for i, text in enumerate(TINY_TEXTS)])
    response = api_client_for(alice).post("/api/v1/evals/packs/", {"file": _file(data)},
                                          format="multipart")
    assert response.status_code == 201, response.content


def _file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("lab_known_texts.jsonl", data)


def run_now(runs) -> list[EvalRun]:
    for run in runs:
        runner.execute_run(run_id=run.pk, worker="test")
    return [EvalRun.objects.get(pk=run.pk) for run in runs]


def bits_per_byte(run: EvalRun) -> float:
    return run.metrics["bits_per_byte"]


def test_an_exploratory_run_on_the_submitters_own_pack_changes_no_tier_gate_or_grant(
        stagegate_server, personas, simple_policy, tiny_model_dir, api_client_for, client,
        tmp_path):
    checkpoint = submit_folder(personas.alice, tiny_model_dir, family="lab/evidence")
    # The number the policy's pack gives, and the (lower) one alice's own pack gives.
    [held_out] = run_now(services.request_evals(actor=personas.alice, checkpoint=checkpoint,
                                                eval_names=["heldout_lm"]))
    upload_known_texts(personas.alice, api_client_for)
    assert held_out.status == "succeeded"
    threshold = round(bits_per_byte(held_out) * 0.9, 4)
    load_policy_version(actor=None, text=policy_text(threshold), source="evidence.yaml")

    release = release_at(personas, "gated", family="lab/evidence", checkpoint=checkpoint)
    standing = release_standing(release)
    assert standing.tier.tier.name == "medium"
    gates_before = [(g.name, g.passed, g.reason) for g in standing.gates]

    # Newer than the evidence, and on a pack the policy never named: exploratory.
    response = api_client_for(personas.alice).post(
        f"/api/v1/checkpoints/{checkpoint.pk}/evaluate/",
        {"evals": ["heldout_lm"], "params": {"heldout_lm": {"pack": "lab_known_texts"}}},
        format="json")
    assert response.status_code == 202
    [explored] = run_now(EvalRun.objects.filter(pk=response.json()[0]["id"]))
    assert explored.status == "succeeded" and bits_per_byte(explored) < threshold
    # Another exploratory twist of the same eval: its own parameters.
    response = api_client_for(personas.alice).post(
        f"/api/v1/checkpoints/{checkpoint.pk}/evaluate/",
        {"evals": ["heldout_lm"], "params": {"heldout_lm": {"max_length": 8}}}, format="json")
    run_now(EvalRun.objects.filter(pk=response.json()[0]["id"]))

    release = Release.objects.get(pk=release.pk)
    standing = release_standing(release)
    assert standing.tier.tier.name == "medium"
    assert [(g.name, g.passed, g.reason) for g in standing.gates] == gates_before
    detail = api_client_for(personas.bob).get(f"/api/v1/releases/{release.pk}/").json()
    assert detail["tier"] == "medium"
    assert detail["evidence"]["counted"]["heldout_lm"]["id"] == held_out.pk
    assert explored.pk in [run["id"] for run in detail["evidence"]["exploratory"]]
    client.force_login(personas.bob)
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert 'id="exploratory"' in page and f"/evals/runs/{explored.pk}/" in page

    # What an outsider gets: no automatic grant, no bytes.
    mallory = api_client_for(personas.mallory)
    response = mallory.post(f"/api/v1/releases/{release.pk}/access-requests/", {
        "licence_version": "r-1", "accept": True, "affiliation": "Nowhere"}, format="json")
    assert response.status_code == 201 and response.json()["status"] == "pending"
    assert not release.grants.filter(user=personas.mallory).exists()
    with pytest.raises(GatedRepoError):
        hf_hub_download("lab/evidence", "model.safetensors", endpoint=stagegate_server.url,
                        token=token_for(personas.mallory, "read"), cache_dir=tmp_path)
    assert AccessRequest.objects.get(user=personas.mallory).status == "pending"


def test_a_lab_makes_its_own_pack_count_by_naming_it_and_its_version_is_pinned(
        personas, simple_policy, tiny_model_dir, api_client_for):
    checkpoint = submit_folder(personas.alice, tiny_model_dir, family="lab/own-pack")
    upload_known_texts(personas.alice, api_client_for)
    from evaluations.models import EvalPack

    pinned = EvalPack.objects.get(name="lab_known_texts").sha256
    version = load_policy_version(actor=None, source="own-pack.yaml", text=policy_text(
        0.01, evidence="evidence:\n  heldout_lm:\n    params: {pack: lab_known_texts}\n"))[0]
    assert version.evidence["heldout_lm"]["packs"] == {"lab_known_texts": pinned}
    # A newer upload of the pack is not what the policy named.
    data = pack_bytes({"name": "lab_known_texts", "version": 2, "type": "scored_text",
                       "description": "changed", "licence": "CC0-1.0"},
                      [{"id": "x", "text": "something else entirely"}])
    services.add_eval_pack(actor=personas.alice, data=data)
    release = release_at(personas, "internal", family="lab/own-pack", checkpoint=checkpoint)
    counted = release_standing(release).evidence.runs["heldout_lm"]
    assert counted.context["packs"]["lab_known_texts"]["sha256"] == pinned
    assert counted.status == "succeeded"


def test_a_policy_naming_a_pack_version_that_does_not_exist_is_refused_at_load():
    from releases.policy import PolicyError

    with pytest.raises(PolicyError, match="evidence for heldout_lm: pack heldout-en with sha256 "
                                          "000000000000… is not in this installation"):
        load_policy_version(actor=None, source="bad.yaml", text=policy_text(
            1.0, evidence="evidence:\n  heldout_lm:\n    packs: {heldout-en: '" + "0" * 64 + "'}\n"))
    with pytest.raises(PolicyError, match="evidence.heldout_lm.params.candidates: heldout_lm has "
                                          "no parameter candidates"):
        load_policy_version(actor=None, source="bad.yaml", text=policy_text(
            1.0, evidence="evidence:\n  heldout_lm:\n    params: {candidates: 5}\n"))
    with pytest.raises(PolicyError, match="evidence.canary_exposure: the policy reads no eval "
                                          "canary_exposure"):
        load_policy_version(actor=None, source="bad.yaml", text=policy_text(
            1.0, evidence="evidence:\n  canary_exposure:\n    params: {n_candidates: 5}\n"))
