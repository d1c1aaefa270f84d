"""A person submits a model folder in a real browser and watches the progress bar."""

from __future__ import annotations

import pytest
import torch

from models.models import Checkpoint
from tests.checkpoints import write_model_folder, write_safetensors
from tests.conftest import make_persona


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_alice_uploads_a_folder_and_sees_the_census(stagegate_server, page, tmp_path):
    from tests.browser import log_in

    make_persona("alice")
    folder = write_model_folder(tmp_path / "tiny-ckpt")
    # 16 MB through an upload link throttled to 8 MB/s: about two seconds of progress events,
    # however fast loopback is.
    write_safetensors(folder / "extra.safetensors", {"big": torch.zeros(4_000_000)})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 8 * 1024 * 1024})

    seen: list[str] = []
    page.expose_function("recordProgress", lambda value: seen.append(value))
    log_in(page, stagegate_server, "alice", "alice-pw")
    page.goto(stagegate_server.url + "/submit/")
    page.evaluate("""() => new MutationObserver(() =>
        window.recordProgress(document.getElementById('progress-bar').value + '|' +
                              document.getElementById('progress-text').textContent))
        .observe(document.getElementById('progress'), {subtree: true, childList: true,
                 characterData: true, attributes: true})""")
    page.fill("input[name=family]", "lab/browser")
    page.fill("input[name=label]", "step1")
    page.set_input_files("#folder-input", str(folder))
    assert page.locator("#file-list li").count() == 7
    page.click("#submit-button")
    page.wait_for_url("**/checkpoints/*/", timeout=60_000)

    checkpoint = Checkpoint.objects.get(family__name="browser", label="step1")
    assert checkpoint.files.count() == 7
    assert set(checkpoint.files.values_list("path", flat=True)) >= {"config.json", "extra.safetensors"}
    assert page.locator("#manifest-digest").inner_text() == checkpoint.manifest_digest
    percentages = [int(s.split("|")[0]) for s in seen if s.split("|")[0].isdigit()]
    assert any(0 < p < 100 for p in percentages), seen
    assert max(percentages) == 100
    assert percentages == sorted(percentages)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_refused_upload_shows_the_reason_on_the_form(stagegate_server, page, tmp_path):
    from tests.browser import log_in

    make_persona("alice")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\x05\0\0\0\0\0\0\0{oops")
    log_in(page, stagegate_server, "alice", "alice-pw")
    page.goto(stagegate_server.url + "/submit/")
    page.fill("input[name=family]", "lab/browser")
    page.fill("input[name=label]", "bad")
    page.set_input_files("#files-input", str(bad / "model.safetensors"))
    page.click("#submit-button")
    error = page.locator("#submit-error")
    error.wait_for(state="visible")
    assert "header is not valid JSON" in error.inner_text()
    assert not Checkpoint.objects.filter(family__name="browser").exists()
