"""The release page holds what a reviewer needs and stays live: numbers with units beside their
threshold and the previous approved checkpoint's, plots with the threshold, one comment box, a
confirmation naming the audience before publishing, and sections swapped in place."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEvent
from releases import workflow
from releases.models import Release
from tests.releases.conftest import run_pending_evals
from tests.releases.stages import release_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeking_gated(personas, simple_policy):
    release = release_at(personas, "partners", family="lab/page")
    workflow.request_next_stage(actor=personas.alice, release=release)
    run_pending_evals(release)
    return Release.objects.get(pk=release.pk)


def test_each_threshold_has_its_value_bound_and_verdict_with_units(seeking_gated, personas,
                                                                   client):
    client.force_login(personas.bob)
    page = client.get(f"/releases/{seeking_gated.pk}/").content.decode()
    row = re.search(r'<tr data-eval="integrity" data-metric="passed">(.*?)</tr>', page, re.S)
    assert row, page
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert "yes" in cells[1] and "must be yes" in cells[2] and "pass" in cells[4]
    assert "bytes_checked" in page and "KB" in page and "bytes_checked</code>=" not in page
    # A pass/fail threshold is its verdict: no plot on the page (the plot URL still answers).
    assert "plots/integrity/passed.png" not in page and 'id="no-plots"' in page
    png = client.get(f"/releases/{seeking_gated.pk}/plots/integrity/passed.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get(f"/releases/{seeking_gated.pk}/plots/integrity/nope.png").status_code == 404


def test_one_comment_box_and_comment_only_records_a_comment(seeking_gated, personas, client):
    client.force_login(personas.bob)
    page = client.get(f"/releases/{seeking_gated.pk}/").content.decode()
    assert page.count('name="comment"') == 1
    client.post(f"/releases/{seeking_gated.pk}/decide/", {
        "decision": "comment", "stage": "gated", "comment": "looking at the bias numbers"})
    assert AuditEvent.objects.filter(verb="release.commented").count() == 1
    assert Release.objects.get(pk=seeking_gated.pk).status == "in_review"


def test_publishing_asks_first_and_names_the_audience(seeking_gated, personas, client):
    from datetime import timedelta

    from releases import clock

    for reviewer in (personas.bob, personas.carol):
        workflow.approve_release(actor=reviewer, release=Release.objects.get(pk=seeking_gated.pk),
                                 stage="gated")
    clock.advance(timedelta(days=7))
    client.force_login(personas.dave)
    page = client.get(f"/releases/{seeking_gated.pk}/").content.decode()
    assert f'href="/releases/{seeking_gated.pk}/publish/"' in page and 'id="publish"' in page
    confirm = client.get(f"/releases/{seeking_gated.pk}/publish/").content.decode()
    assert 'id="audience">approved users<' in confirm
    assert seeking_gated.manifest_digest in confirm
    assert Release.objects.get(pk=seeking_gated.pk).current_stage == "partners"  # nothing yet
    client.post(f"/releases/{seeking_gated.pk}/publish/", {"stage": "gated"})
    assert Release.objects.get(pk=seeking_gated.pk).current_stage == "gated"
    # alice is told why she has no Approve button.
    client.force_login(personas.alice)


def test_the_submitter_is_told_why_she_has_no_approve_button(seeking_gated, personas, client):
    client.force_login(personas.alice)
    page = client.get(f"/releases/{seeking_gated.pk}/").content.decode()
    assert 'id="approve"' not in page
    assert "No review buttons: you submitted this release or its checkpoint; someone else must " \
           "review it." in page


def test_the_live_poll_swaps_every_section_in_place(seeking_gated, personas, client):
    client.force_login(personas.bob)
    page = client.get(f"/releases/{seeking_gated.pk}/").content.decode()
    assert 'hx-trigger="every 15s"' in page  # in review: decisions may still come
    live = client.get(f"/releases/{seeking_gated.pk}/?live=1", HTTP_HX_REQUEST="true")
    html = live.content.decode()
    for section in ("release-status", "release-summary", "actions", "evidence", "reviews",
                    "timeline", "release-live"):
        assert re.search(rf'id="{section}"[^>]*hx-swap-oob="true"', html), section
    assert "<html" not in html
    workflow.approve_release(actor=personas.bob, release=seeking_gated, stage="gated")
    html = client.get(f"/releases/{seeking_gated.pk}/?live=1").content.decode()
    assert "approved by bob for role safety" in html  # a decision shows without a reload
    assert 'id="review-comment"' in html and "hx-preserve" in html  # typing is kept


def test_the_canary_page_registers_a_canary_and_never_shows_its_secret(personas, simple_policy,
                                                                       client):
    from tests.releases.conftest import submit_checkpoint

    checkpoint = submit_checkpoint(personas.alice, family="lab/canaries")
    url = "/families/lab/canaries/canaries/"
    client.force_login(personas.alice)
    page = client.get(url).content.decode()
    assert "No canary yet" in page and "ceiling counts it as above" in page
    response = client.post(url, {"kind": "canary", "template": "vault code {}",
                                 "alphabet": "0123456789", "length": "4", "secret": "8071"},
                           follow=True)
    text = response.content.decode()
    assert "canary-" in text and "never be shown again" in text and "8071" not in text
    assert checkpoint.family.canaries.count() == 1
    client.force_login(personas.mallory)
    assert client.get(url).status_code == 404
    client.force_login(personas.bob)  # may see the family, not an owner
    client.post(url, {"kind": "canary", "template": "x {}", "alphabet": "01", "length": "2",
                      "secret": "01"})
    assert checkpoint.family.canaries.count() == 1


def test_a_quarantined_checkpoint_is_never_the_previous_one(personas, simple_policy):
    from models.models import Checkpoint
    from models.selectors import previous_checkpoint
    from tests.releases.conftest import submit_checkpoint

    first = submit_checkpoint(personas.alice, label="v1", family="lab/prev")
    middle = submit_checkpoint(personas.alice, label="v2", seed=1, family="lab/prev")
    Checkpoint.objects.filter(pk=middle.pk).update(status="quarantined")
    last = submit_checkpoint(personas.alice, label="v3", seed=2, family="lab/prev")
    assert previous_checkpoint(last) == first
