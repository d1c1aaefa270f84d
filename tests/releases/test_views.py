"""Release pages: the queue, the release page and its forms, the audit pages."""

from __future__ import annotations

import json

import pytest

from releases.models import Release
from tests.releases.conftest import ASSESSMENT, run_pending_evals, submit_checkpoint


@pytest.fixture
def login(client):
    def as_user(user):
        client.force_login(user)
        return client
    return as_user


@pytest.mark.django_db
def test_alice_opens_and_submits_a_release_from_the_form(personas, simple_policy, login):
    checkpoint = submit_checkpoint(personas.alice)
    client = login(personas.alice)
    panel = client.get(f"/checkpoints/{checkpoint.pk}/releases/").content.decode()
    assert "Open a release" in panel
    response = client.post(f"/checkpoints/{checkpoint.pk}/releases/new/",
                           {**ASSESSMENT, "submit_now": "1"})
    release = Release.objects.get()
    assert response.status_code == 302 and response.url == release.get_absolute_url()
    assert release.status == "evaluating"


@pytest.mark.django_db
def test_the_release_page_shows_gates_assessment_timeline(personas, in_review, login):
    page = login(personas.bob).get(in_review.get_absolute_url()).content.decode()
    for text in ('id="gates"', "interpretability research", 'id="timeline"', "release.submitted",
                 "eval:integrity:passed", in_review.manifest_digest):
        assert text in page


@pytest.mark.django_db
def test_reviewers_see_their_queue_oldest_first(personas, simple_policy, login):
    from releases import workflow

    releases = []
    for i in range(2):
        checkpoint = submit_checkpoint(personas.alice, label=f"v{i}", seed=i)
        release = workflow.create_release(actor=personas.alice, checkpoint=checkpoint,
                                          assessment=ASSESSMENT)
        workflow.submit_release(actor=personas.alice, release=release)
        run_pending_evals(release)
        workflow.publish_release(actor=personas.dave, release=release, stage="internal")
        workflow.request_next_stage(actor=personas.alice, release=release)
        run_pending_evals(release)
        releases.append(release)
    page = login(personas.bob).get("/reviews/").content.decode()
    assert page.index(f"/releases/{releases[0].pk}/") < page.index(f"/releases/{releases[1].pk}/")
    assert "Nothing waits for you" in login(personas.carol).get("/reviews/").content.decode()
    assert "Nothing waits for you" in login(personas.alice).get("/reviews/").content.decode()


@pytest.mark.django_db
def test_a_refused_action_shows_its_reason(personas, in_review, login):
    client = login(personas.dave)
    response = client.post(f"/releases/{in_review.pk}/publish/", {"stage": "gated"}, follow=True)
    assert "approved for internal, not gated" in response.content.decode()


@pytest.mark.django_db
def test_the_audit_log_page_filters_and_exports(personas, in_review, login):
    client = login(personas.bob)
    page = client.get("/audit/", {"verb": "release."}).content.decode()
    assert "release.submitted" in page and "token.created" not in page
    export = client.get("/audit/export.jsonl", {"object": f"releases.release:{in_review.pk}"})
    lines = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
    assert lines and all(line["object"] == f"releases.release:{in_review.pk}" for line in lines)
    assert all(set(line) >= {"seq", "hash", "prev_hash", "verb"} for line in lines)
    assert login(personas.mallory).get("/audit/").status_code == 403


@pytest.mark.django_db
def test_the_model_card_is_rendered_safely_on_the_page_and_its_front_matter_is_card_data(
        personas, simple_policy, client, tmp_path):
    from tests.checkpoints import write_model_folder
    from tests.releases.stages import release_at

    folder = write_model_folder(tmp_path / "card")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [tiny]\n---\n"
                                      "# Tiny card\n\n<script>alert(1)</script>\n")
    release_at(personas, "open", family="lab/carded", folder=folder)

    page = client.get("/models/lab/carded/").content.decode()
    assert "<h1>Tiny card</h1>" in page
    assert "license: apache-2.0" not in page and "<script>alert(1)" not in page
    info = client.get("/api/models/lab/carded").json()
    assert info["cardData"] == {"license": "apache-2.0", "tags": ["tiny"]}


@pytest.mark.django_db
def test_the_review_form_shows_exactly_when_the_service_would_take_the_review(
        personas, in_review, login):
    from tests.releases.test_workflow import at_partners_review

    release = at_partners_review(personas, in_review)  # partners needs one safety approval
    shown = {name: 'id="review-form"' in login(personas[name]).get(
        release.get_absolute_url()).content.decode() for name in ("alice", "bob", "carol")}
    assert shown == {"alice": False, "bob": True, "carol": False}


@pytest.mark.django_db
def test_a_release_sent_back_for_changes_can_have_its_assessment_edited_on_its_page(
        personas, in_review, login):
    from releases import workflow
    from tests.releases.test_workflow import at_partners_review

    release = at_partners_review(personas, in_review)
    workflow.request_changes(actor=personas.bob, release=release, stage="partners",
                             comment="say which datasets")
    client = login(personas.alice)
    assert 'id="edit-assessment"' in client.get(release.get_absolute_url()).content.decode()
    fields = {**ASSESSMENT, "training_data": "The Pile, deduplicated; no personal data."}
    response = client.post(f"/releases/{release.pk}/update/", fields)
    assert response.status_code == 302
    release.refresh_from_db()
    assert release.assessment["training_data"] == "The Pile, deduplicated; no personal data."


@pytest.mark.django_db
@pytest.mark.parametrize("cursor", ["abc", "-5"])
def test_a_tree_cursor_that_is_not_a_whole_number_is_a_400(personas, simple_policy, client,
                                                           cursor):
    from tests.releases.stages import release_at

    release_at(personas, "open", family="lab/tree")
    response = client.get(f"/api/models/lab/tree/tree/main?cursor={cursor}")
    assert response.status_code == 400 and "cursor" in response.json()["error"]
    assert client.get("/api/models/lab/tree/tree/main?cursor=0").status_code == 200
