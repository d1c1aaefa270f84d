"""The release API of DESIGN.md §4: paths, status codes (403 permission, 409 state), details."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from releases.models import Release
from tests.releases.conftest import ASSESSMENT, run_pending_evals, submit_checkpoint


@pytest.fixture
def api(api_client_for, personas):
    return {name: api_client_for(personas[name]) for name in personas}


@pytest.mark.django_db
def test_the_whole_path_through_the_api(api, personas, simple_policy):
    checkpoint = submit_checkpoint(personas.alice)
    created = api["alice"].post("/api/v1/releases/", {"checkpoint": checkpoint.pk,
                                                       "assessment": ASSESSMENT}, format="json")
    assert created.status_code == 201, created.content
    release_id = created.json()["id"]
    submitted = api["alice"].post(f"/api/v1/releases/{release_id}/submit/")
    assert submitted.status_code == 200 and submitted.json()["status"] == "evaluating"
    run_pending_evals(Release.objects.get(pk=release_id))

    body = api["dave"].get(f"/api/v1/releases/{release_id}/").json()
    assert body["status"] == "approved" and body["next_stage"] == "internal"
    assert all(g["passed"] for g in body["gates"])
    assert api["dave"].post(f"/api/v1/releases/{release_id}/publish/",
                            {"stage": "internal"}, format="json").status_code == 200
    assert api["alice"].post(f"/api/v1/releases/{release_id}/next-stage/").status_code == 200
    run_pending_evals(Release.objects.get(pk=release_id))

    body = api["bob"].get(f"/api/v1/releases/{release_id}/").json()
    assert body["status"] == "in_review" and body["target_stage"] == "partners"
    closed = [g for g in body["gates"] if not g["passed"]]
    assert [g["name"] for g in closed] == ["approvals:safety"]
    assert "needs 1 more approval from role safety" in closed[0]["reason"]

    approved = api["bob"].post(f"/api/v1/releases/{release_id}/approve/",
                               {"stage": "partners", "comment": "looks fine"}, format="json")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["approvals"][-1]["reviewer"] == "bob"
    published = api["dave"].post(f"/api/v1/releases/{release_id}/publish/",
                                 {"stage": "partners"}, format="json")
    assert published.json()["current_stage"] == "partners"


@pytest.mark.django_db
def test_refusals_are_403_for_permission_and_409_for_state(api, personas, in_review):
    release = in_review
    rid = release.pk
    # Mallory cannot even see it.
    assert api["mallory"].get(f"/api/v1/releases/{rid}/").status_code == 404
    # Alice may not approve her own release (403, in words).
    response = api["alice"].post(f"/api/v1/releases/{rid}/approve/", {"stage": "internal"},
                                 format="json")
    assert response.status_code == 403
    assert "someone else must review it" in response.json()["detail"]
    # Publishing the wrong stage is a state conflict (409).
    response = api["dave"].post(f"/api/v1/releases/{rid}/publish/", {"stage": "open"},
                                format="json")
    assert response.status_code == 409
    assert "approved for internal, not open" in response.json()["detail"]
    # A missing field is a 400 with a detail.
    response = api["dave"].post(f"/api/v1/releases/{rid}/publish/", {}, format="json")
    assert response.status_code == 400 and "stage" in response.json()["detail"]
    # Withdrawing needs a reason.
    response = api["dave"].post(f"/api/v1/releases/{rid}/withdraw/", {}, format="json")
    assert response.status_code == 400 and "say why" in response.json()["detail"]
    response = api["dave"].post(f"/api/v1/releases/{rid}/withdraw/", {"reason": "oops"},
                                format="json")
    assert response.json()["status"] == "withdrawn"
    response = api["dave"].post(f"/api/v1/releases/{rid}/submit/")
    assert response.status_code == 403  # dave is not the submitter


@pytest.mark.django_db
def test_a_read_token_cannot_act(api_client_for, personas, in_review):
    response = api_client_for(personas.dave, "read").post(
        f"/api/v1/releases/{in_review.pk}/publish/", {"stage": "internal"}, format="json")
    assert response.status_code == 403 and "scope 'read'" in response.json()["detail"]


@pytest.mark.django_db
def test_the_audit_api_filters_by_object(api, personas, in_review):
    response = api["bob"].get(f"/api/v1/audit/?object=releases.release:{in_review.pk}")
    assert response.status_code == 200
    verbs = [e["verb"] for e in response.json()["results"]]
    assert "release.submitted" in verbs and "release.created" in verbs
    assert api["mallory"].get("/api/v1/audit/").status_code == 403
    assert AuditEvent.objects.filter(verb="permission.denied", actor=personas.mallory).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["since=yesterday", "until=2026-02-30"])
def test_an_audit_filter_that_is_not_a_date_is_a_400_that_says_how_to_write_it(
        api, personas, client, query):
    response = api["bob"].get(f"/api/v1/audit/?{query}")
    assert response.status_code == 400 and "YYYY-MM-DD" in str(response.json())
    client.force_login(personas.bob)
    for url in ("/audit/", "/audit/export.jsonl"):
        page = client.get(f"{url}?{query}")
        assert page.status_code == 400 and b"YYYY-MM-DD" in page.content
    assert api["bob"].get("/api/v1/audit/?since=2026-01-01").status_code == 200
