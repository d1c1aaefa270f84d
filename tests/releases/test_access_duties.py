"""Separation of duties covers access: the submitter of a release and the uploader of its
checkpoint cannot open it to anyone (partner grants, access-request decisions), through the API
or the Access page; a release manager can. What is checked is the grant erin ends up with."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from releases import access
from releases.models import AccessGrant, AccessRequest
from tests.releases.stages import release_at

pytestmark = pytest.mark.django_db


def erins_request(release, api_client_for, personas) -> int:
    response = api_client_for(personas.erin).post(
        f"/api/v1/releases/{release.pk}/access-requests/",
        {"licence_version": "research-1", "accept": True, "affiliation": "Uni"}, format="json")
    assert response.status_code == 201 and response.json()["status"] == "pending"
    return response.json()["id"]


def test_the_submitter_cannot_grant_access_to_her_own_release(personas, simple_policy,
                                                              api_client_for, client):
    gated = release_at(personas, "gated", family="lab/duties")
    partners = release_at(personas, "partners", family="lab/duties-p")
    request_id = erins_request(gated, api_client_for, personas)
    alice = api_client_for(personas.alice)  # an owner of both families, and their submitter

    response = alice.post(f"/api/v1/access-requests/{request_id}/approve/", {}, format="json")
    assert response.status_code == 403 and "someone else" in response.json()["detail"]
    response = alice.post("/api/v1/access-requests/bulk/", {"ids": [request_id],
                                                            "decision": "approve"},
                          format="json")
    assert response.status_code == 403
    response = alice.post(f"/api/v1/releases/{partners.pk}/grants/", {
        "user": "erin", "agreement_note": "agreement #1"}, format="json")
    assert response.status_code == 403
    client.force_login(personas.alice)
    page = client.get("/access/")
    assert f'value="{request_id}"' not in page.content.decode()  # not offered on the page
    client.post("/access/", {"action": "approve", "request": [request_id]})
    client.post("/access/", {"action": "partner", "release": partners.pk, "user": "erin",
                             "agreement_note": "agreement #1"})

    assert not AccessGrant.objects.filter(user=personas.erin).exists()
    assert AccessRequest.objects.get(pk=request_id).status == "pending"
    assert access.download_access(personas.erin, gated).allowed is False
    refusals = AuditEvent.objects.filter(verb="permission.denied", actor=personas.alice)
    assert {e.data["action"] for e in refusals} >= {"access.decide", "access.grant"}

    # A release manager can.
    dave = api_client_for(personas.dave)
    assert dave.post(f"/api/v1/access-requests/{request_id}/approve/", {},
                     format="json").status_code == 200
    assert dave.post(f"/api/v1/releases/{partners.pk}/grants/", {
        "user": "erin", "agreement_note": "agreement #1"}, format="json").status_code == 201
    assert access.download_access(personas.erin, gated).allowed
    assert access.download_access(personas.erin, partners).allowed
    # Taking access away is never blocked by the same rule: alice may revoke.
    grant = AccessGrant.objects.get(user=personas.erin, release=partners)
    assert alice.post(f"/api/v1/grants/{grant.pk}/revoke/", {"reason": "agreement lapsed"},
                      format="json").status_code == 200
    assert not access.download_access(personas.erin, partners).allowed


def test_another_owner_who_did_not_submit_may_grant(personas, simple_policy, api_client_for):
    from django.contrib.auth.models import User

    gated = release_at(personas, "gated", family="lab/co-owned")
    frank = User.objects.create_user("frank", email="frank@example.org")
    frank.groups.add(gated.checkpoint.family.owners)
    request_id = erins_request(gated, api_client_for, personas)
    assert api_client_for(frank).post(f"/api/v1/access-requests/{request_id}/approve/", {},
                                      format="json").status_code == 200
    assert access.download_access(personas.erin, gated).allowed
