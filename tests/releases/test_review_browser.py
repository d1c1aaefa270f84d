"""Alice submits in the browser, Bob and Carol approve in the browser, the gates turn green."""

from __future__ import annotations

import pytest

from releases.models import Release
from releases.policies_service import load_policy_version
from tests.browser import click_through, log_in
from tests.conftest import make_persona
from tests.registry.test_tasks import wait_for
from tests.releases.conftest import ASSESSMENT, POLICIES, submit_checkpoint


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_alice_submits_bob_and_carol_approve_and_the_gates_turn_green(
        stagegate_server, celery_worker_process, browser):
    load_policy_version(actor=None, text=(POLICIES / "reviewed.yaml").read_text(),
                        source="reviewed.yaml")
    alice, bob, carol = (make_persona(name) for name in ("alice", "bob", "carol"))
    checkpoint = submit_checkpoint(alice, label="browser")
    url = stagegate_server.url

    page = browser.new_context().new_page()
    log_in(page, stagegate_server, "alice", "alice-pw")
    page.goto(f"{url}{checkpoint.get_absolute_url()}")
    page.click("text=Open a release")
    for field, value in ASSESSMENT.items():
        page.fill(f"textarea[name={field}]", value)
    page.click("#release-form button[type=submit]")
    page.wait_for_url("**/releases/*/")
    release = Release.objects.get(checkpoint=checkpoint)
    # The worker runs the integrity eval; the release then waits for its reviewers.
    wait_for(lambda: Release.objects.get(pk=release.pk).status == "in_review")
    page.context.close()

    for reviewer in ("bob", "carol"):
        page = browser.new_context().new_page()
        log_in(page, stagegate_server, reviewer, f"{reviewer}-pw")
        page.goto(f"{url}/reviews/")
        click_through(page, f"#review-queue a[href='/releases/{release.pk}/']")
        assert page.locator("#gates-verdict").inner_text() == "blocked"
        page.fill("#review-form textarea[name=comment]", f"{reviewer} checked the census and evals")
        click_through(page, "#approve")
        gate = page.locator(f"li[data-gate='approvals:{'safety' if reviewer == 'bob' else 'policy'}']")
        assert "pass" in gate.get_attribute("class")
        if reviewer == "carol":
            page.goto(f"{url}/releases/{release.pk}/")
            assert page.locator("#release-status").inner_text() == "approved: internal"
            assert page.locator("#gates-verdict").inner_text() == "all gates pass"
            assert page.locator("li.gate.fail").count() == 0
        page.context.close()
