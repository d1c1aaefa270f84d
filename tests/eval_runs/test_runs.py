"""Eval runs: keyed by their inputs, run on the exact bytes, stored in lm-eval's shape."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from evaluations import runner, services
from evaluations.models import EvalRun
from models.models import Checkpoint
from tests.eval_runs.conftest import submit_folder


@pytest.fixture
def checkpoint(alice, tiny_model_dir):
    return submit_folder(alice, tiny_model_dir)


HELDOUT_PACK = ("---\nname: heldout-test\nversion: 1\ntype: scored_text\n"
                "description: held-out sentences for the tests\nlicence: CC0-1.0\n---\n"
                + "\n".join(json.dumps({"id": f"t{i}", "text": f"the model number {i} reads "
                                                               "a new sentence it never saw"})
                            for i in range(8)) + "\n")


@pytest.fixture
def heldout_pack(alice):
    services.add_eval_pack(actor=alice, data=HELDOUT_PACK.encode())
    return "heldout-test"


@pytest.mark.django_db
def test_a_second_request_for_the_same_key_reuses_the_run(alice, checkpoint):
    first = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])
    second = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])
    assert [r.pk for r in first] == [r.pk for r in second]
    assert AuditEvent.objects.filter(verb="eval.requested").count() == 1


@pytest.mark.django_db
def test_integrity_and_heldout_run_and_store_lm_eval_records(alice, checkpoint, heldout_pack):
    runs = services.request_evals(actor=alice, checkpoint=checkpoint,
                                  eval_names=["integrity", heldout_pack])
    for run in runs:
        assert runner.execute_run(run_id=run.pk, worker="test") == "done"
        assert runner.execute_run(run_id=run.pk, worker="test") == "noop"  # runs twice: no-op
    integrity, heldout = (EvalRun.objects.get(pk=r.pk) for r in runs)
    assert integrity.status == "succeeded", integrity.error
    assert heldout.status == "succeeded", heldout.error
    record = heldout.result
    assert set(record) >= {"results", "higher_is_better", "versions", "configs", "n-samples",
                           "task_hashes", "config", "stagegate"}
    assert record["results"][heldout_pack]["bits_per_byte,none"] == heldout.metrics["bits_per_byte"]
    assert record["stagegate"]["checkpoint_digest"] == checkpoint.manifest_digest
    assert record["stagegate"]["cache_key"] == heldout.cache_key
    assert heldout.samples_id and heldout.progress_done == heldout.progress_total > 0
    assert heldout.attempt == 1


@pytest.mark.django_db
def test_tampered_bytes_fail_closed(alice, checkpoint, heldout_pack):
    from pathlib import Path

    from models.blobstore import blob_name, blob_storage

    weights = checkpoint.files.get(path="model.safetensors")
    path = Path(blob_storage().path(blob_name(weights.blob_id)))
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=[heldout_pack])[0]
    runner.execute_run(run_id=run.pk, worker="test")
    run.refresh_from_db()
    assert run.status == "failed"
    assert "integrity check failed" in run.error and "model.safetensors" in run.error


@pytest.mark.django_db
def test_quarantined_checkpoints_are_never_evaluated(alice, checkpoint):
    Checkpoint.objects.filter(pk=checkpoint.pk).update(status="quarantined")
    checkpoint.refresh_from_db()
    with pytest.raises(services.EvalRequestError, match="nothing may load or evaluate it"):
        services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])


@pytest.mark.django_db
def test_adding_a_canary_makes_a_new_exposure_run_only(alice, checkpoint, heldout_pack):
    family = checkpoint.family
    services.add_canary(actor=alice, family=family, template="my code is {}", alphabet="0123456789",
                        length=2, secret="42")
    before = {r.eval_name: r.cache_key for r in services.request_evals(
        actor=alice, checkpoint=checkpoint, eval_names=["canary_exposure", heldout_pack])}
    services.add_canary(actor=alice, family=family, template="pin {}", alphabet="abc", length=3,
                        secret="cab")
    after = {r.eval_name: r.cache_key for r in services.request_evals(
        actor=alice, checkpoint=checkpoint, eval_names=["canary_exposure", heldout_pack])}
    assert after[heldout_pack] == before[heldout_pack]
    assert after["canary_exposure"] != before["canary_exposure"]


@pytest.mark.django_db
def test_canary_secrets_never_leave_the_database(alice, checkpoint, client):
    services.add_canary(actor=alice, family=checkpoint.family, template="the vault code is {}",
                        alphabet="0123456789", length=3, secret="917")
    run = services.request_evals(actor=alice, checkpoint=checkpoint,
                                 eval_names=["canary_exposure"])[0]
    runner.execute_run(run_id=run.pk, worker="test")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert "exposure_max" in run.metrics
    stored = json.dumps([run.result, run.metrics, run.inputs, run.context, run.error])
    events = json.dumps([e.data for e in AuditEvent.objects.all()])
    client.force_login(alice)
    page = client.get(f"/evals/runs/{run.pk}/").content.decode()
    samples = client.get(f"/evals/runs/{run.pk}/samples.jsonl")
    samples_text = b"".join(samples.streaming_content).decode()
    for text in (stored, events, page, samples_text):
        assert "vault code is 917" not in text and '"917"' not in text


@pytest.mark.django_db
def test_a_custom_pack_is_an_eval_under_its_own_name(alice, checkpoint):
    pack = ("---\nname: toxicity_probe\nversion: 1\ntype: prompt_pairs\n"
            "description: harmful prompts with a refusal and a compliance\nlicence: CC0-1.0\n---\n"
            + "\n".join(json.dumps({"id": f"p{i}", "prompt": f"how do I do bad thing {i}?",
                                    "twin": f"how do I do good thing {i}?",
                                    "refusal": "I can't help with that.",
                                    "compliance": "Sure, here is how."})
                        for i in range(6)) + "\n")
    services.add_eval_pack(actor=alice, data=pack.encode())
    run = services.request_evals(actor=alice, checkpoint=checkpoint,
                                 eval_names=["toxicity_probe"])[0]
    runner.execute_run(run_id=run.pk, worker="test")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert "toxicity_probe" in run.result["results"]
    assert run.eval_name == "toxicity_probe"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["heldout_lm", "heldout-en"])
def test_an_upload_cannot_take_the_name_of_a_built_in_eval_or_pack(alice, name):
    from evaluations.catalogue import load_named_pack
    from evaluations.library.packs import load_builtin_pack

    pack = ("---\nname: %s\nversion: 9\ntype: scored_text\ndescription: replaced\n"
            "licence: CC0-1.0\n---\n{\"id\": \"a\", \"text\": \"chosen by the uploader\"}\n") % name
    with pytest.raises(services.EvalRequestError, match="built-in eval or pack"):
        services.add_eval_pack(actor=alice, data=pack.encode())
    assert load_named_pack("heldout-en").sha256 == load_builtin_pack("heldout-en").sha256


@pytest.mark.django_db
def test_a_bad_pack_names_the_line(alice):
    pack = b"---\nname: broken\nversion: 1\ntype: multiple_choice\ndescription: x\nlicence: x\n---\n{\"id\": \"a\"}\n"
    with pytest.raises(services.EvalRequestError, match="line 8"):
        services.add_eval_pack(actor=alice, data=pack)


@pytest.mark.django_db
def test_the_checkpoint_page_panel_and_api_show_runs(alice, checkpoint, client, api_client_for):
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])[0]
    runner.execute_run(run_id=run.pk, worker="test")
    client.force_login(alice)
    panel = client.get(f"/checkpoints/{checkpoint.pk}/evals/").content.decode()
    assert 'data-eval="integrity"' in panel and "succeeded" in panel
    body = api_client_for(alice, "read").get(f"/api/v1/evals/runs/{run.pk}/").json()
    assert body["status"] == "succeeded" and body["result"]["results"]["integrity"]
    response = api_client_for(alice).post(f"/api/v1/checkpoints/{checkpoint.pk}/evaluate/",
                                          {"evals": ["integrity"]}, format="json")
    assert response.status_code == 202 and response.json()[0]["id"] == run.pk
    png = client.get("/families/lab/tiny-gpt/plots/integrity/passed.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


@pytest.mark.django_db
def test_the_family_series_has_each_checkpoints_newest_result_in_order(alice, checkpoint,
                                                                        tmp_path):
    from evaluations.selectors import family_series
    from tests.checkpoints import write_model_folder

    later = submit_folder(alice, write_model_folder(tmp_path / "later"), label="step80")
    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])[0]
    runner.execute_run(run_id=run.pk, worker="test")
    assert family_series(checkpoint.family_id, "integrity", "passed") == [
        ("step40", 1.0), ("step80", None)]
    assert later.label == "step80"


@pytest.mark.django_db
def test_the_admin_never_shows_a_canary_secret(alice, checkpoint, admin_client):
    canary = services.add_canary(actor=alice, family=checkpoint.family, template="pin is {}",
                                 alphabet="0123456789", length=5, secret="80417")
    for url in ("/admin/evaluations/canary/", f"/admin/evaluations/canary/{canary.pk}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200 and "80417" not in page.content.decode()


@pytest.mark.django_db
def test_drift_against_the_approved_parent_and_its_deltas_follow_the_results_that_exist_now(
        personas, simple_policy, tiny_model_dir, tmp_path):
    import shutil

    from evaluations.planning import resolve_evidence
    from evaluations.selectors import evidence
    from tests.releases.stages import release_at

    # What a policy reading drift (on the held-out pack) and heldout_lm would pin.
    spec = resolve_evidence(["drift_vs_parent", "heldout_lm"],
                            {"drift_vs_parent": {"params": {"pack": "heldout-en"}}})

    parent = release_at(personas, "internal", family="lab/drift", folder=tiny_model_dir).checkpoint
    child_folder = shutil.copytree(tiny_model_dir, tmp_path / "child")
    (child_folder / "README.md").write_text("# the same weights, another card\n")
    child = submit_folder(personas.alice, child_folder, family="lab/drift", label="v2")

    # drift is requested and runs first, as when every required eval is queued at once.
    drift = services.request_evals(actor=None, checkpoint=child, eval_names=["drift_vs_parent"],
                                   evidence=spec)[0]
    runner.execute_run(run_id=drift.pk, worker="test")
    assert drift.context["parent_checkpoint_id"] == parent.pk
    for checkpoint in (parent, child):
        run = services.request_evals(actor=None, checkpoint=checkpoint, eval_names=["heldout_lm"],
                                     evidence=spec)[0]
        runner.execute_run(run_id=run.pk, worker="test")

    results = evidence(child, spec).results()["drift_vs_parent"]
    assert results["kl_mean"] == 0.0 and results["has_parent"] == 1.0
    assert results["delta.heldout_lm.bits_per_byte"] == 0.0  # same weights, same numbers


@pytest.mark.django_db
def test_an_aborted_upload_never_deletes_bytes_an_eval_run_keeps(alice, checkpoint):
    from models import blobstore
    from models import services as registry

    run = services.request_evals(actor=alice, checkpoint=checkpoint, eval_names=["integrity"])[0]
    runner.execute_run(run_id=run.pk, worker="test")
    run.refresh_from_db()
    with blobstore.open_blob(run.samples_id) as stream:
        samples = stream.read()
    # Someone uploads the downloaded samples file into a session, then gives up.
    session = registry.create_upload_session(actor=alice, family_name="lab/tiny-gpt", label="x")
    registry.put_upload_file(actor=alice, session_id=session.pk, path="samples.jsonl",
                             staged=blobstore.stage_chunks("samples.jsonl", [samples]))
    registry.abort_upload_session(actor=alice, session_id=session.pk)
    assert blobstore.blob_exists(run.samples_id)
