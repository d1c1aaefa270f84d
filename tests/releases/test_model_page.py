"""The gated model page as erin meets it: one licence checkbox, the policy's questions, a
snippet that works pasted as written, and an Access page that says which version is asked for."""

from __future__ import annotations

import re
import subprocess

import pytest

from releases.models import AccessRequest
from tests.releases.stages import release_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def gated(personas, simple_policy):
    return release_at(personas, "gated", family="lab/page-gated")


def test_one_licence_checkbox_and_the_answers_are_the_policys_questions(gated, personas, client):
    client.force_login(personas.erin)
    page = client.get("/models/lab/page-gated/").content.decode()
    form = re.search(r'<form[^>]*id="access-form".*?</form>', page, re.S).group(0)
    assert form.count('type="checkbox"') == 1 and form.count('name="accept"') == 1
    assert 'for="field-affiliation"' in form and 'id="field-affiliation"' in form
    assert "request access on its page" not in page
    client.post(f"/models/lab/page-gated/releases/{gated.pk}/request-access/", {
        "licence_version": "research-1", "accept": "on", "affiliation": "Uni of Example"})
    request = AccessRequest.objects.get(user=personas.erin)
    assert request.answers == {"affiliation": "Uni of Example"}
    client.force_login(personas.dave)
    access_page = client.get("/access/").content.decode()
    assert "accept:" not in access_page and "affiliation:" in access_page
    assert f"release #{gated.pk}" in access_page and gated.checkpoint.label in access_page


def test_the_snippet_is_a_shell_block_and_a_python_block_in_plain_ascii(gated, personas, client):
    client.force_login(personas.erin)
    page = client.get("/models/lab/page-gated/").content.decode()
    shell = re.search(r'<code id="snippet-shell">(.*?)</code>', page, re.S).group(1)
    python = re.search(r'<code id="snippet-python">(.*?)</code>', page, re.S).group(1)
    assert shell.isascii() and python.isascii()
    assert "huggingface-cli" not in page and "hf download lab/page-gated" in shell
    assert "export HF_TOKEN=YOUR_STAGEGATE_TOKEN" in shell
    # Each block is valid as written: the shell one parses in bash, the Python one compiles.
    import html

    subprocess.run(["bash", "-n"], input=html.unescape(shell).encode(), check=True)
    compile(html.unescape(python), "snippet", "exec")
    assert gated.checkpoint.commit in python
