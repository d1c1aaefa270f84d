"""Point 7: paths are normalised to NFC; zero-width, bidi-control and other invisible
characters are refused; case-insensitively-equal or NFC-equal paths are duplicates, with a
message that names both. Replayed through the API of a live server, multipart and PUT."""

from __future__ import annotations

import hashlib
import unicodedata
from urllib.parse import quote

import pytest
import requests

from models.formats import FormatError
from models.formats.layout import check_unique, normalize_path
from models.models import Checkpoint
from releases import workflow
from releases.policies_service import load_policy_version
from tests.checkpoints import raw_safetensors
from tests.conftest import StateSnapshot
from tests.hardening.conftest import bearer
from tests.releases.conftest import ASSESSMENT, POLICIES, run_pending_evals

pytestmark = pytest.mark.django_db(transaction=True)

WEIGHTS = raw_safetensors({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                          b"\0" * 4)
NFC = unicodedata.normalize("NFC", "café.json")
NFD = unicodedata.normalize("NFD", "café.json")


def _submit(server, token, names: list[str], label="v1"):
    files = [("path:model.safetensors", ("model.safetensors", WEIGHTS))]
    files += [(f"path:{name}", ("x.json", b"{}")) for name in names]
    return requests.post(f"{server.url}/api/v1/checkpoints/", headers=bearer(token),
                         data={"family": "lab/paths", "label": label}, files=files)


@pytest.mark.parametrize("names,message", [
    ([NFC, NFD], "written in two Unicode forms (NFC and NFD)"),
    (["README.md", "readme.md"], "differ only by case"),
    (["Config.JSON", "config.json"], "differ only by case"),
])
def test_look_alike_names_are_one_duplicate_named_twice(people, stagegate_server, names, message):
    _, tokens = people
    snapshot = StateSnapshot()
    response = _submit(stagegate_server, tokens["alice"], names)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert message in detail
    for name in names:
        assert ascii(name) in detail or repr(name) in detail
    snapshot.assert_unchanged()


@pytest.mark.parametrize("name,char", [
    ("README\u200b.md", "U+200B ZERO WIDTH SPACE"),
    ("evil\u202egnp.json", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("a\u2066b.json", "U+2066 LEFT-TO-RIGHT ISOLATE"),
    ("\ufeffconfig.json", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ("soft\u00adhyphen.json", "U+00AD SOFT HYPHEN"),
    ("join\u200dme.json", "U+200D ZERO WIDTH JOINER"),
    ("filler\u3164.json", "U+3164 HANGUL FILLER"),
    ("nbsp\u00a0name.json", "U+00A0 NO-BREAK SPACE"),
    ("vs\ufe0f.json", "U+FE0F VARIATION SELECTOR-16"),
])
def test_an_invisible_character_in_a_path_is_refused_by_name(people, stagegate_server, name,
                                                             char):
    _, tokens = people
    snapshot = StateSnapshot()
    response = _submit(stagegate_server, tokens["alice"], [name])
    assert response.status_code == 400, response.text
    assert f"contains the invisible character {char}" in response.json()["detail"]
    snapshot.assert_unchanged()


def test_an_nfd_name_is_stored_in_nfc_and_served_under_both_spellings(people, stagegate_server):
    _, tokens = people
    response = _submit(stagegate_server, tokens["alice"], [NFD])
    assert response.status_code == 201, response.text
    checkpoint = Checkpoint.objects.get(pk=response.json()["id"])
    assert sorted(checkpoint.files.values_list("path", flat=True)) == [NFC, "model.safetensors"]
    personas, _ = people
    load_policy_version(actor=None, text=(POLICIES / "simple.yaml").read_text(),
                        source="simple.yaml")
    release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                      assessment=ASSESSMENT)
    workflow.submit_release(actor=personas.alice, release=release)
    run_pending_evals(release)
    workflow.publish_release(actor=personas.dave, release=release, stage="internal")
    for spelling in (NFC, NFD):
        served = requests.get(f"{stagegate_server.url}/lab/paths/resolve/main/{quote(spelling)}",
                              headers=bearer(tokens["alice"]))
        assert served.status_code == 200 and served.content == b"{}"


def test_a_put_with_a_bidi_override_in_its_path_stores_nothing(people, stagegate_server):
    _, tokens = people
    session = requests.post(f"{stagegate_server.url}/api/v1/uploads/",
                            json={"family": "lab/paths", "label": "put1"},
                            headers=bearer(tokens["alice"])).json()
    snapshot = StateSnapshot()
    response = requests.put(
        f"{stagegate_server.url}/api/v1/uploads/{session['id']}/files/"
        f"{quote('weights' + chr(0x202E) + 'txt.safetensors')}",
        data=WEIGHTS, headers=bearer(tokens["alice"]))
    assert response.status_code == 400
    assert "RIGHT-TO-LEFT OVERRIDE" in response.json()["detail"]
    snapshot.assert_unchanged()


def test_put_of_the_nfd_spelling_replaces_the_nfc_file(people, stagegate_server):
    _, tokens = people
    session = requests.post(f"{stagegate_server.url}/api/v1/uploads/",
                            json={"family": "lab/paths", "label": "put2"},
                            headers=bearer(tokens["alice"])).json()
    base = f"{stagegate_server.url}/api/v1/uploads/{session['id']}/files/"
    for name, body in ((NFC, b'{"v": 1}'), (NFD, b'{"v": 2}')):
        response = requests.put(base + quote(name), data=body, headers=bearer(tokens["alice"]))
        assert response.status_code == 201, response.text
        assert response.json()["path"] == NFC
    files = requests.get(f"{stagegate_server.url}/api/v1/uploads/{session['id']}/",
                         headers=bearer(tokens["alice"])).json()["files"]
    assert [(f["path"], f["sha256"]) for f in files] == [
        (NFC, hashlib.sha256(b'{"v": 2}').hexdigest())]


def test_the_rules_hold_for_every_caller_of_the_path_functions():
    assert normalize_path(NFD) == NFC
    with pytest.raises(FormatError, match="same name"):
        check_unique([normalize_path(NFC), normalize_path(NFD)], [NFC, NFD])
    with pytest.raises(FormatError, match="is a file but"):
        check_unique(["Tokenizer", "tokenizer/vocab.json"])
