"""A stage serves exactly the bytes approved for it: the submitter's attacks on a published
release, replayed through the REST API, the pages and the stock Hub client, and what the
audience gets afterwards (the Hub `sha` of each revision and the sha256 of the bytes served)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from releases import workflow
from releases.models import Release
from tests.conftest import token_for
from tests.eval_runs.conftest import submit_folder
from tests.releases.conftest import ASSESSMENT, run_pending_evals
from tests.releases.stages import grant, release_at

pytestmark = pytest.mark.django_db(transaction=True)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def what_erin_gets(server, repo: str, token: str, cache: Path) -> dict:
    """{revision: (Hub sha, sha256 of the weights downloaded at that revision)}."""
    api = HfApi(endpoint=server.url)
    seen = {}
    for revision in ("main", "gated"):
        path = hf_hub_download(repo, "model.safetensors", revision=revision, token=token,
                               endpoint=server.url, cache_dir=cache / revision)
        seen[revision] = (api.model_info(repo, revision=revision, token=token).sha, sha256(path))
    return seen


def other_bytes(folder: Path, tmp_path: Path, name: str) -> Path:
    """The same model with a different card: other bytes nobody reviewed."""
    changed = shutil.copytree(folder, tmp_path / name)
    (changed / "README.md").write_text(f"# {name}: not what the reviewers saw\n")
    return changed


@pytest.fixture
def gated(personas, simple_policy, tiny_model_dir):
    release = release_at(personas, "gated", family="lab/pinned", folder=tiny_model_dir)
    grant(personas, release, personas.erin)
    return release


def test_a_sent_back_release_cannot_swap_the_bytes_behind_its_published_stage(
        stagegate_server, gated, personas, tiny_model_dir, tmp_path, api_client_for):
    published = gated.checkpoint
    weights = published.files.get(path="model.safetensors").blob_id
    erin = token_for(personas.erin, "read")
    expected = {"main": (published.commit, weights), "gated": (published.commit, weights)}
    assert what_erin_gets(stagegate_server, "lab/pinned", erin, tmp_path / "before") == expected

    # alice asks for open, carol sends it back, and alice PATCHes in bytes nobody reviewed.
    workflow.request_next_stage(actor=personas.alice, release=gated)
    run_pending_evals(gated)
    workflow.request_changes(actor=personas.carol, release=Release.objects.get(pk=gated.pk),
                             stage="open", comment="the card overstates the evals")
    unreviewed = submit_folder(personas.alice, other_bytes(tiny_model_dir, tmp_path, "v2"),
                               family="lab/pinned", label="v2")
    response = api_client_for(personas.alice).patch(
        f"/api/v1/releases/{gated.pk}/", {"checkpoint": unreviewed.pk}, format="json")
    assert response.status_code == 409
    assert "has published gated, so its bytes can never change" in response.json()["detail"]
    release = Release.objects.get(pk=gated.pk)
    assert release.checkpoint == release.published_checkpoint == published
    assert what_erin_gets(stagegate_server, "lab/pinned", erin, tmp_path / "after") == expected

    # The database refuses it too, whatever code path tries.
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Release.objects.filter(pk=gated.pk).update(checkpoint=unreviewed)

    # New bytes are a new release, which climbs the ladder on its own approvals.
    response = api_client_for(personas.alice).post("/api/v1/releases/", {
        "checkpoint": unreviewed.pk, "assessment": ASSESSMENT, "supersedes": gated.pk},
        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["supersedes"] == gated.pk
    assert response.json()["published_checkpoint"] is None
    assert what_erin_gets(stagegate_server, "lab/pinned", erin, tmp_path / "new") == expected


def test_withdrawn_bytes_never_come_back_through_an_edit_or_a_new_release(
        stagegate_server, gated, personas, tiny_model_dir, tmp_path, api_client_for, client):
    withdrawn = gated.checkpoint
    workflow.withdraw_release(actor=personas.dave, release=gated, reason="leaked eval data")
    # The same bytes under another label: the bar is on the bytes, not the row.
    again = submit_folder(personas.alice, tiny_model_dir, family="lab/pinned", label="again")
    assert again.manifest_digest == withdrawn.manifest_digest
    alice = api_client_for(personas.alice)
    for checkpoint in (withdrawn, again):
        response = alice.post("/api/v1/releases/", {"checkpoint": checkpoint.pk,
                                                    "assessment": ASSESSMENT}, format="json")
        assert response.status_code == 409
        assert "were withdrawn after publication in release" in response.json()["detail"]
    # A draft of other bytes cannot be PATCHed over to them either.
    draft_bytes = submit_folder(personas.alice, other_bytes(tiny_model_dir, tmp_path, "v3"),
                                family="lab/pinned", label="v3")
    draft = alice.post("/api/v1/releases/", {"checkpoint": draft_bytes.pk,
                                             "assessment": ASSESSMENT}, format="json").json()
    response = alice.patch(f"/api/v1/releases/{draft['id']}/", {"checkpoint": again.pk},
                           format="json")
    assert response.status_code == 409 and "reviewer reopens" in response.json()["detail"]
    assert Release.objects.get(pk=draft["id"]).checkpoint == draft_bytes
    erin = token_for(personas.erin, "read")
    from huggingface_hub.errors import DisabledRepoError

    with pytest.raises(DisabledRepoError):
        hf_hub_download("lab/pinned", "model.safetensors", token=erin,
                        endpoint=stagegate_server.url, cache_dir=tmp_path / "withdrawn")

    # alice may not lift the bar on her own bytes; bob may, with a reason, on the page.
    response = alice.post(f"/api/v1/releases/{gated.pk}/reopen/", {"reason": "fixed"},
                          format="json")
    assert response.status_code == 403
    client.force_login(personas.bob)
    page = client.get(f"/releases/{gated.pk}/")
    assert b"Reopen these bytes" in page.content
    client.post(f"/releases/{gated.pk}/reopen/", {"reason": "the leaked data was removed from "
                                                            "the eval set, not the model"})
    assert Release.objects.get(pk=gated.pk).reopening.reopened_by == personas.bob
    response = alice.post("/api/v1/releases/", {"checkpoint": again.pk,
                                                "assessment": ASSESSMENT}, format="json")
    assert response.status_code == 201, response.content


def test_rejected_bytes_need_a_reviewer_to_reopen_them(personas, simple_policy, api_client_for):
    from tests.releases.conftest import submit_checkpoint

    checkpoint = submit_checkpoint(personas.alice, family="lab/rejected")
    release = release_at(personas, "internal", family="lab/rejected", checkpoint=checkpoint)
    workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    workflow.reject_release(actor=personas.bob, release=Release.objects.get(pk=release.pk),
                            stage="partners", comment="memorises the canary")
    alice = api_client_for(personas.alice)
    response = alice.post("/api/v1/releases/", {"checkpoint": checkpoint.pk,
                                                "assessment": ASSESSMENT}, format="json")
    assert response.status_code == 409 and "were rejected in release" in response.json()["detail"]
    carol = api_client_for(personas.carol)
    assert carol.post(f"/api/v1/releases/{release.pk}/reopen/", {"reason": ""},
                      format="json").status_code == 400
    for _ in range(2):  # runs twice: one reopening, one event
        response = carol.post(f"/api/v1/releases/{release.pk}/reopen/",
                              {"reason": "the canary was a false positive"}, format="json")
        assert response.status_code == 200
    from audit.models import AuditEvent

    assert AuditEvent.objects.filter(verb="release.bytes_reopened").count() == 1
    assert alice.post("/api/v1/releases/", {"checkpoint": checkpoint.pk,
                                            "assessment": ASSESSMENT},
                      format="json").status_code == 201
