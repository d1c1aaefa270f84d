"""The three journeys, as people meet them: in Chromium, on a live Stagegate with a real worker,
PostgreSQL and Redis, at 1280×800 and at 390×844. Every page on the way is checked for 5xx
responses, console errors, serious or critical axe-core findings and sideways scrolling
(tests/browser.py Watched.check), and the key pages are saved as screenshots.

1. alice submits a model folder for review: keyboard-reachable choosers, progress with bytes,
   rate and time left, Cancel leaves nothing behind, scan, census and evals arrive without a
   reload, a missing tokenizer is explained, she opens and submits the release.
2. bob lands on his queue; the release page holds what he needs; bob and carol approve with
   comments; dave publishes partners, then gated, each after a confirmation naming the
   audience; alice sees why she has no Approve button.
3. erin finds the model, asks for access, is approved, downloads from the page and runs the
   page's snippet as written; mallory sees nothing she may not, on styled pages.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.models import Checkpoint
from releases import workflow
from releases.models import Release
from releases.policies_service import load_policy_version
from tests.browser import click_through, log_in
from tests.conftest import StateSnapshot, make_persona
from tests.eval_runs.conftest import submit_folder
from tests.registry.test_tasks import wait_for
from tests.releases.conftest import ASSESSMENT
from tests.releases.stages import release_at

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
POLICY = Path(__file__).with_name("journey.yaml")
VENV_BIN = Path(sys.executable).parent
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json")


@pytest.fixture
def people(transactional_db):
    load_policy_version(actor=None, text=POLICY.read_text(), source=POLICY.name)

    class People(dict):  # as tests.conftest's personas: people.alice and people["alice"]
        def __getattr__(self, name):
            return self[name]

    return People({name: make_persona(name) for name in ("alice", "bob", "carol", "dave",
                                                         "erin", "mallory")})


def tab_to(page, selector: str, limit: int = 60) -> None:
    """Reach an element with the Tab key alone, as a keyboard user would."""
    page.locator("body").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the keyboard")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- 1. submit a checkpoint for review --------------------------------------------------------

@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_journey_1_alice_submits_a_checkpoint_for_review(stagegate_server, celery_worker_process,
                                                         watched, people, tiny_model_dir,
                                                         tmp_path, viewport):
    w = watched(viewport)
    page, url = w.page, stagegate_server.url
    family = f"lab/journey-{viewport}"
    log_in(page, stagegate_server, "alice", "alice-pw")
    assert page.url.endswith("/families/")
    page.goto(url + "/submit/")
    w.check("1-submit")
    page.fill("#family-input", family)
    page.fill("#label-input", "v1")
    tab_to(page, "#folder-input")
    tab_to(page, "#files-input")

    # A slow upload, cancelled: the bar showed bytes, rate and time left; nothing is kept.
    before = StateSnapshot()
    big = tmp_path / "big"
    shutil.copytree(tiny_model_dir, big)
    (big / "padding.bin.txt").write_bytes(os.urandom(6 * 1024 * 1024))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1,
                                                  "uploadThroughput": 512 * 1024})
    page.set_input_files("#folder-input", str(big))
    page.click("#submit-button")
    page.wait_for_function("() => /\\/s · .* left/.test("
                           "document.getElementById('progress-text').textContent)")
    text = page.locator("#progress-text").inner_text()
    assert re.search(r"\d+% · [\d.]+ \w+ of [\d.]+ \w+ · [\d.]+ \w+/s · .+ left", text), text
    page.click("#cancel-button")
    page.wait_for_selector("#submit-error:not([hidden])")
    assert "nothing was stored" in page.locator("#submit-error").inner_text()
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    wait_for(lambda: StateSnapshot.capture() == before.before, timeout=30)

    # The real upload; then scan, census and evals arrive on the page as they finish.
    page.set_input_files("#folder-input", str(tiny_model_dir))
    page.click("#submit-button")
    page.wait_for_url("**/checkpoints/*/", timeout=60_000)
    checkpoint = Checkpoint.objects.get(family__name=f"journey-{viewport}", label="v1")
    page.wait_for_function("""() => {
        const row = document.querySelector('#eval-runs tr[data-eval="heldout_lm"] .badge');
        return row && row.textContent.trim() === 'succeeded'; }""", timeout=120_000)
    assert page.locator("#census-parameters").inner_text()
    w.check("1-checkpoint")

    # A folder without a tokenizer is explained, with the fix, before any eval fails.
    broken = shutil.copytree(tiny_model_dir, tmp_path / "no-tokenizer")
    for name in TOKENIZER_FILES:
        (broken / name).unlink(missing_ok=True)
    untokenized = submit_folder(people["alice"], broken, family=family, label="no-tokenizer")
    page.goto(url + untokenized.get_absolute_url())
    notice = page.locator("#tokenizer-notice").inner_text()
    assert "no tokenizer" in notice and "tokenizer.save_pretrained(folder)" in notice
    w.check()

    # She opens the release, fills in the assessment and submits it.
    page.goto(url + checkpoint.get_absolute_url())
    page.click("text=Open a release")
    for field, value in ASSESSMENT.items():
        page.fill(f"textarea[name={field}]", value)
    page.click("#release-form button[type=submit]")
    page.wait_for_url("**/releases/*/")
    page.wait_for_function("() => document.getElementById('release-status').textContent"
                           ".includes('approved')", timeout=60_000)  # internal: no approvals
    w.check("1-release")


# --- 2. approve a release in the web UI --------------------------------------------------------

@pytest.fixture
def seeking_partners(people, tiny_model_dir, tmp_path):
    """demo-like: v1 released to partners before; v2 (other bytes) now seeks partners."""
    family = "lab/journey-review"
    release_at(people, "partners", family=family, folder=tiny_model_dir)
    v2_folder = shutil.copytree(tiny_model_dir, tmp_path / "v2")
    (v2_folder / "README.md").write_text("# v2\nThe second checkpoint.\n")
    v2 = submit_folder(people["alice"], v2_folder, family=family, label="v2")
    release = release_at(people, "internal", family=family, checkpoint=v2)
    workflow.request_next_stage(actor=people["alice"], release=release)
    wait_for(lambda: Release.objects.get(pk=release.pk).status == "in_review", timeout=120)
    return Release.objects.get(pk=release.pk)


def review(w, server, reviewer: str, release: Release, comment: str) -> None:
    page = w.page
    log_in(page, server, reviewer, f"{reviewer}-pw")
    assert page.url.endswith("/reviews/")  # a reviewer lands on their queue
    page.click(f"#review-queue a[href='/releases/{release.pk}/']")
    page.fill("#review-comment", comment)
    click_through(page, "#approve")
    page.context.clear_cookies()


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_journey_2_bob_and_carol_approve_and_dave_publishes(stagegate_server,
                                                            celery_worker_process, watched,
                                                            people, seeking_partners, viewport):
    release, url = seeking_partners, stagegate_server.url
    w = watched(viewport)
    page = w.page
    log_in(page, stagegate_server, "bob", "bob-pw")
    assert page.url.endswith("/reviews/")
    w.check("2-queue")
    click_through(page, f"#review-queue a[href='/releases/{release.pk}/']")
    for section in ("#gates", "#census", "#evidence-table", "#assessment", "#diff", "#timeline"):
        assert page.locator(section).is_visible(), section
    row = page.locator("#evidence-table tr[data-eval='heldout_lm']")
    cells = row.locator("td").all_inner_texts()
    assert "bits/byte" in cells[1] and "at most 12" in cells[2] and "bits/byte" in cells[3]
    plot = page.locator("#evidence img").first
    plot.scroll_into_view_if_needed()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=plot.element_handle())
    w.check("2-release")
    page.context.clear_cookies()
    review(w, stagegate_server, "bob", release, "census and held-out numbers look right")
    review(w, stagegate_server, "carol", release, "licence and agreement checked")
    assert Release.objects.get(pk=release.pk).status == "approved"

    # alice is told why she has no Approve button.
    log_in(page, stagegate_server, "alice", "alice-pw")
    page.goto(f"{url}/releases/{release.pk}/")
    assert page.locator("#approve").count() == 0
    assert "someone else must review it" in page.locator("#why-no-review").inner_text()
    page.context.clear_cookies()

    # dave publishes partners after a confirmation that names the audience, then gated.
    for stage in ("partners", "gated"):
        log_in(page, stagegate_server, "dave", "dave-pw")
        page.goto(f"{url}/releases/{release.pk}/")
        page.click("#publish")
        audience = page.locator("#audience").inner_text()
        assert audience.startswith("Named partner" if stage == "partners" else "Any signed-in")
        w.check(f"2-confirm-{stage}")
        page.click("#confirm-publish")
        page.wait_for_url(f"**/releases/{release.pk}/")
        assert Release.objects.get(pk=release.pk).current_stage == stage
        if stage == "partners":
            click_through(page, "#next-stage")
            wait_for(lambda: Release.objects.get(pk=release.pk).status == "in_review", timeout=120)
            page.context.clear_cookies()
            review(w, stagegate_server, "bob", release, "gated: same bytes, same numbers")
            review(w, stagegate_server, "carol", release, "gated licence reviewed")
    w.check()


# --- 3. download approved weights ---------------------------------------------------------------

@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_journey_3_erin_downloads_and_mallory_sees_nothing(stagegate_server,
                                                           celery_worker_process, watched,
                                                           people, tiny_model_dir, tmp_path,
                                                           viewport):
    url = stagegate_server.url
    gated = release_at(people, "gated", family=f"lab/journey-gated-{viewport}",
                       folder=tiny_model_dir)
    hidden = release_at(people, "partners", family=f"lab/journey-partners-{viewport}",
                        folder=tiny_model_dir)
    repo = gated.checkpoint.family.repo_id
    w = watched(viewport)
    page = w.page

    log_in(page, stagegate_server, "erin", "erin-pw")
    assert page.url.endswith("/models/")
    page.fill("input[name=q]", f"journey-gated-{viewport}")
    click_through(page, "form.search button")
    w.check("3-catalogue")
    click_through(page, f"a[href='/models/{repo}/']")
    page.fill("#field-affiliation", "University of Example")
    page.fill("#field-intended_use", "Interpretability of small models")
    assert page.locator("#access-form input[type=checkbox]").count() == 1
    page.check("#accept-licence")
    w.check("3-model-page")
    click_through(page, "#request-access")
    assert "Request sent" in page.locator(".messages").inner_text()
    page.context.clear_cookies()

    log_in(page, stagegate_server, "dave", "dave-pw")
    page.goto(url + "/access/")
    page.check("#bulk-form input[name=request]")
    click_through(page, "#bulk-form button[value=approve]")
    page.context.clear_cookies()

    log_in(page, stagegate_server, "erin", "erin-pw")
    page.goto(f"{url}/models/{repo}/")
    assert "You may download" in page.locator("#access-state").inner_text()
    with page.expect_download() as download:
        page.click("#how-to-download a[href$='/config.json']")
    config = gated.checkpoint.files.get(path="config.json")
    assert sha256(download.value.path()) == config.blob_id
    shell = html.unescape(page.locator("#snippet-shell").inner_text())
    python = html.unescape(page.locator("#snippet-python").inner_text())
    w.check()

    # The snippet, pasted as written (with her token in place of the placeholder).
    page.goto(url + "/accounts/profile/")
    page.fill("input[name=name]", "laptop")
    page.click("text=Create token")
    token = page.locator("#new-token code").inner_text().strip()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    work = tmp_path / "erin"
    work.mkdir()
    shell = shell.replace("YOUR_STAGEGATE_TOKEN", token)
    done = subprocess.run(["bash", "-euc", shell + f"\npython - <<'PY'\n{python}\nPY\n"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = work / gated.checkpoint.family.name
    for f in gated.checkpoint.files.all():
        assert sha256(folder / f.path) == f.blob_id, f.path
    page.context.clear_cookies()

    # mallory: nothing she may not see, and every refusal a styled page that says what to do.
    log_in(page, stagegate_server, "mallory", "mallory-pw")
    page.goto(url + "/models/")
    assert hidden.checkpoint.family.repo_id not in page.content()
    for path in (f"/models/{hidden.checkpoint.family.repo_id}/", f"/releases/{gated.pk}/",
                 "/access/", "/audit/"):
        response = page.goto(url + path)
        assert response.status in (403, 404), (path, response.status)
        assert page.locator("header.topbar").count() == 1, path  # styled, not a bare page
        assert page.locator("main").inner_text().strip(), path
        w.problems.clear()  # the browser logs the 403/404 itself; that is the page's point
        w.check("3-refused" if path == "/access/" else None)
    page.goto(f"{url}/models/{repo}/")
    assert "You may download" not in page.locator("#access-state").inner_text()
