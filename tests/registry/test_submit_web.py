"""The web form: the same service, the same refusals, shown on the page."""

from __future__ import annotations

import pytest
from django.test import override_settings

from models.models import Checkpoint
from safetensors.torch import save

from tests.checkpoints import tensors
from tests.registry.bad_inputs import as_upload, catalogue, multipart_data

URL = "/submit/"


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.mark.django_db
def test_the_form_page_offers_folder_and_file_choosers(alice_client):
    page = alice_client.get(URL).content.decode()
    assert "webkitdirectory" in page and 'id="progress-bar"' in page


@pytest.mark.django_db
def test_a_valid_submission_redirects_to_the_checkpoint(alice_client):
    data = {"family": "lab/tiny", "label": "v1",
            "path:model.safetensors": as_upload("model.safetensors", save(tensors()))}
    response = alice_client.post(URL, data)
    checkpoint = Checkpoint.objects.get()
    assert response.status_code == 302 and response.url == checkpoint.get_absolute_url()
    page = alice_client.get(response.url).content.decode()
    assert checkpoint.manifest_digest in page and "embed.weight" in page


@pytest.mark.django_db
def test_xhr_submissions_get_json(alice_client):
    case = next(c for c in catalogue() if c.id == "unknown-dtype")
    response = alice_client.post(URL, multipart_data(case), HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "unknown dtype" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", catalogue(), ids=lambda c: c.id)
def test_bad_input_is_shown_on_the_form(case, alice_client, nothing_left_behind):
    with override_settings(**case.settings):
        response = alice_client.post(URL, multipart_data(case))
    assert response.status_code == case.status
    assert case.message.replace("'", "&#x27;") in response.content.decode()
    nothing_left_behind.assert_unchanged()


@pytest.mark.django_db
def test_the_form_needs_a_csrf_token(alice, nothing_left_behind):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    case = next(c for c in catalogue() if c.id == "unknown-dtype")
    response = client.post(URL, multipart_data(case))
    assert response.status_code == 403
    nothing_left_behind.assert_unchanged()


@pytest.mark.django_db
def test_outsiders_see_why_they_cannot_submit(client, personas):
    client.force_login(personas.mallory)
    page = client.get(URL).content.decode()
    assert "needs the <strong>researchers</strong> role" in page
