"""Registry pages and API reads: who sees what."""

from __future__ import annotations

import pytest
from safetensors.torch import save

from models import blobstore, services
from tests.checkpoints import tensors


@pytest.fixture
def checkpoint(alice):
    staged = [blobstore.stage_chunks("model.safetensors", [save(tensors())])]
    return services.submit_checkpoint(actor=alice, family_name="lab/tiny", label="v1", files=staged)


@pytest.mark.django_db
@pytest.mark.parametrize("username,sees", [
    ("alice", True), ("bob", True), ("carol", True), ("dave", True), ("erin", False),
    ("mallory", False)])
def test_the_registry_is_visible_to_owners_and_reviewers_only(username, sees, personas, checkpoint,
                                                              client, api_client_for):
    client.force_login(personas[username])
    family_page = client.get("/families/lab/tiny/")
    checkpoint_page = client.get(checkpoint.get_absolute_url())
    assert (family_page.status_code, checkpoint_page.status_code) == ((200, 200) if sees else (404, 404))
    assert ("lab/tiny" in client.get("/families/").content.decode()) is sees
    api = api_client_for(personas[username], "read")
    assert api.get(f"/api/v1/checkpoints/{checkpoint.pk}/").status_code == (200 if sees else 404)
    listed = api.get("/api/v1/checkpoints/").json()["results"]
    assert bool(listed) is sees
    assert api.get("/api/v1/families/lab/tiny/").status_code == (200 if sees else 404)


@pytest.mark.django_db
def test_the_checkpoint_page_shows_the_census(alice, client, checkpoint):
    client.force_login(alice)
    page = client.get(checkpoint.get_absolute_url()).content.decode()
    for text in (checkpoint.manifest_digest, "embed.weight", "[32, 16]", "BF16", "F16",
                 "model.safetensors", checkpoint.files.get().blob_id):
        assert text in page


@pytest.mark.django_db
def test_family_checkpoints_and_manifest_are_in_the_api(alice, api_client_for, checkpoint):
    api = api_client_for(alice, "read")
    listed = api.get("/api/v1/families/lab/tiny/checkpoints/").json()["results"]
    assert [c["label"] for c in listed] == ["v1"]
    manifest = api.get(f"/api/v1/checkpoints/{checkpoint.pk}/manifest/").json()
    assert manifest["manifest_digest"] == checkpoint.manifest_digest
    assert manifest["files"][0]["path"] == "model.safetensors"


@pytest.mark.django_db
def test_pages_need_a_login(client, checkpoint):
    for url in ("/families/", "/submit/", checkpoint.get_absolute_url(), "/accounts/profile/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/login/")


@pytest.mark.django_db
def test_the_openapi_schema_and_docs_page_are_served(alice, client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/checkpoints/", "/api/v1/checkpoints/{id}/", "/api/v1/uploads/",
                 "/api/v1/uploads/{session_id}/files/{path}"):
        assert path in paths, sorted(paths)
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


NAV = {"Registry": "/families/", "Submit": "/submit/", "Review queue": "/reviews/",
       "Audit": "/audit/", "My submissions": "/releases/?mine=1", "Access": "/access/"}


@pytest.mark.django_db
@pytest.mark.parametrize("username,home,links", [
    ("alice", "/families/", {"Registry", "Submit", "My submissions"}),
    ("bob", "/reviews/", {"Registry", "Review queue", "Audit"}),
    ("dave", "/releases/", {"Registry", "Audit", "Access"}),
    ("erin", "/models/", set()),
    ("mallory", "/models/", set()),
])
def test_signing_in_lands_each_person_where_their_work_is(
        username, home, links, personas, client):
    from releases.management.commands.seed_demo import password_for

    user = personas[username]
    user.set_password(password_for(username))
    user.save()
    form = client.get("/login/")
    landed = client.post("/login/", {"username": username, "password": password_for(username),
                                     "csrfmiddlewaretoken": form.cookies["csrftoken"].value},
                         follow=True)
    assert landed.redirect_chain[-1][0] == home
    page = landed.content.decode()
    shown = {name for name, url in NAV.items() if f'href="{url}"' in page}
    assert shown == links
    assert 'href="/models/"' in page and 'href="/api/v1/docs/"' in page
