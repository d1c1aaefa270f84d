"""Work done once: a worker copies and verifies a checkpoint once and loads its model once for
every eval it runs on it, with the numbers each eval gives alone, and fails closed whenever the
bytes it would load are not the manifest's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from evaluations import runner, services
from evaluations.checkpoint_cache import Layout
from evaluations.library.lm import load_causal_lm
from evaluations.library.model_cache import ModelCache
from evaluations.models import EvalRun
from models.blobstore import blob_name, blob_storage
from tests.conftest import make_persona
from tests.eval_runs.conftest import submit_folder
from tests.evaluations import corpora
from tests.registry.test_tasks import wait_for

SEVEN = ["integrity", "heldout_lm", "canary_exposure", "verbatim_extraction", "mc_knowledge",
         "pairwise_bias", "refusal_preference"]


def with_family_data(alice, checkpoint):
    services.add_canary(actor=alice, family=checkpoint.family, template="the code is {}",
                        alphabet="0123456789", length=2, secret="42")
    services.add_extraction_prefix(actor=alice, family=checkpoint.family,
                                   prefix="the model number 1", continuation=" reads the text")
    return checkpoint


def run_here(checkpoint, names, params=None) -> dict[str, EvalRun]:
    runs = services.request_evals(actor=None, checkpoint=checkpoint, eval_names=names,
                                  params=params or {})
    for run in runs:
        assert runner.execute_run(run_id=run.pk, worker="test") == "done"
    return {run.eval_name: EvalRun.objects.get(pk=run.pk) for run in runs}


def store_path(checkpoint, path: str = "model.safetensors") -> Path:
    return Path(blob_storage().path(blob_name(checkpoint.files.get(path=path).blob_id)))


def flip_last_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def models():
    cache = runner.worker_models()
    cache.clear()
    return cache


@pytest.mark.django_db
def test_seven_evals_verify_the_checkpoint_once_load_it_once_and_score_as_without(
        alice, tiny_model_dir, tmp_path, models, settings):
    checkpoint = with_family_data(alice, submit_folder(alice, tiny_model_dir, family="lab/once"))
    runs = run_here(checkpoint, ["integrity"])
    # The store is read once, for the copy: past it, even a change to the store's bytes
    # reaches no eval, which all load the verified copy.
    flip_last_byte(store_path(checkpoint))
    runs |= run_here(checkpoint, SEVEN[1:])
    assert {name: run.status for name, run in runs.items()} == dict.fromkeys(SEVEN, "succeeded")
    assert (models.loads, models.hits) == (1, 5)
    layout = Layout(settings.STAGEGATE_EVAL_CACHE_DIR)
    assert [p.stem for p in layout.entries.glob("*.json")] == [checkpoint.manifest_digest]
    integrity = runs["integrity"].result["stagegate"]["notes"]
    assert any("hashed from the blob store at" in note for note in integrity)
    assert runs["integrity"].metrics["bytes_checked"] == sum(f.size for f in checkpoint.files.all())
    flip_last_byte(store_path(checkpoint))  # put it back for the twin below

    # The same weights as another checkpoint (a card added), copies and models off: the same
    # numbers, eval by eval.
    twin_folder = shutil.copytree(tiny_model_dir, tmp_path / "twin")
    (twin_folder / "README.md").write_text("# the same weights\n")
    twin = with_family_data(alice, submit_folder(alice, twin_folder, family="lab/twin"))
    settings.STAGEGATE_EVAL_CACHE_BYTES = 0
    settings.STAGEGATE_EVAL_MODEL_CACHE_MODELS = 0
    alone = run_here(twin, SEVEN)
    def numbers(run: EvalRun) -> dict:  # a canary's own metric is named by its family's label
        return {k: v for k, v in run.metrics.items() if not k.startswith("exposure_canary")}

    for name in SEVEN[1:]:
        assert alone[name].status == "succeeded", alone[name].error
        assert numbers(runs[name]) == pytest.approx(numbers(alone[name]), abs=1e-6), name
    assert alone["integrity"].metrics["passed"] == 1.0
    assert list(layout.entries.glob("*.json")) == [layout.record(checkpoint.manifest_digest)]


@pytest.mark.django_db
def test_a_changed_copy_is_made_again_and_a_changed_store_then_fails_closed(alice, tiny_model_dir,
                                                                            models, settings):
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/tamper")
    layout = Layout(settings.STAGEGATE_EVAL_CACHE_DIR)
    first = run_here(checkpoint, ["heldout_lm"])["heldout_lm"]
    assert first.status == "succeeded", first.error
    verified_at = layout.record(checkpoint.manifest_digest).read_text()
    copied = layout.folder(checkpoint.manifest_digest) / "model.safetensors"
    flip_last_byte(copied)
    second = run_here(checkpoint, ["pairwise_bias"])["pairwise_bias"]
    assert second.status == "succeeded", second.error
    assert layout.record(checkpoint.manifest_digest).read_text() != verified_at  # made again
    assert copied.read_bytes() == store_path(checkpoint).read_bytes()

    models.clear()
    flip_last_byte(copied)
    flip_last_byte(store_path(checkpoint))
    third = run_here(checkpoint, ["mc_knowledge"])["mc_knowledge"]
    assert third.status == "failed"
    assert third.error.startswith("integrity check failed: model.safetensors: sha256")
    assert not layout.record(checkpoint.manifest_digest).exists()
    assert models.loads == 0  # nothing was loaded from the bytes that failed


@pytest.mark.django_db
def test_with_copies_off_every_model_eval_still_re_hashes_and_fails_closed(alice, tiny_model_dir,
                                                                           settings):
    settings.STAGEGATE_EVAL_CACHE_BYTES = 0
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/no-copies")
    assert run_here(checkpoint, ["heldout_lm"])["heldout_lm"].status == "succeeded"
    flip_last_byte(store_path(checkpoint))
    run = run_here(checkpoint, ["pairwise_bias"])["pairwise_bias"]
    assert run.status == "failed" and "integrity check failed" in run.error
    assert not Layout(settings.STAGEGATE_EVAL_CACHE_DIR).entries.exists()


@pytest.mark.django_db
def test_a_fine_tuning_attack_trains_its_own_copy_of_the_shared_model(alice, tiny_model_dir,
                                                                      models):
    for pack in (corpora.attack_pack(), corpora.refusal_pack()):
        services.add_eval_pack(actor=alice, data=pack)
    checkpoint = submit_folder(alice, tiny_model_dir, family="lab/attack-copy")
    before = run_here(checkpoint, ["heldout_lm"])["heldout_lm"]
    for method in ("lora", "full"):
        attack = run_here(checkpoint, ["finetune_attack"], {"finetune_attack": {
            "pack": "test-attack", "measure_pack": "test-refusal", "steps": 3, "every": 3,
            "method": method, "learning_rate": 0.05}})["finetune_attack"]
        assert attack.status == "succeeded", attack.error
    after = run_here(checkpoint, ["heldout_lm"], {"heldout_lm": {"batch_size": 3}})["heldout_lm"]
    assert after.pk != before.pk
    assert after.metrics == pytest.approx(before.metrics, rel=1e-6)  # another batch size
    assert (models.loads, models.discarded) == (1, 0)


def test_a_model_an_eval_changed_is_never_handed_out_again(tiny_model_dir):
    cache = ModelCache(1)
    key = ("a" * 64, "cpu", False)
    model, _ = cache.get(key, tiny_model_dir, load_causal_lm)
    assert cache.get(key, tiny_model_dir, load_causal_lm)[0] is model and cache.hits == 1
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    fresh, _ = cache.get(key, tiny_model_dir, load_causal_lm)
    assert fresh is not model and cache.discarded == 1
    on_disk, _ = load_causal_lm(tiny_model_dir)
    for (name, a), (_, b) in zip(fresh.state_dict().items(), on_disk.state_dict().items()):
        assert torch.equal(a, b), name
    fresh.train()  # a mode change is a change too
    assert cache.get(key, tiny_model_dir, load_causal_lm)[0] is not fresh
    assert cache.discarded == 2
    other, _ = cache.get(("b" * 64, "cpu", False), tiny_model_dir, load_causal_lm)
    assert len(cache) == 1 and cache.loads == 4  # bounded: the other model replaced it


@pytest.mark.django_db(transaction=True)
def test_a_worker_with_two_processes_verifies_a_checkpoint_once_for_all_its_evals(
        start_worker, tiny_model_dir, tmp_path):
    alice = make_persona("alice")
    checkpoint = with_family_data(alice, submit_folder(alice, tiny_model_dir, family="lab/w"))
    runs = services.request_evals(actor=None, checkpoint=checkpoint, eval_names=SEVEN)
    worker = start_worker("once", queues="evals", concurrency=2,
                          extra_env={"STAGEGATE_EVAL_CACHE_DIR": str(tmp_path / "cache")})
    wait_for(lambda: not EvalRun.objects.filter(pk__in=[r.pk for r in runs]).exclude(
        status__in=EvalRun.FINISHED).exists(), timeout=240)
    statuses = {r.eval_name: r.status for r in EvalRun.objects.filter(pk__in=[r.pk for r in runs])}
    assert statuses == dict.fromkeys(SEVEN, "succeeded")
    log = worker.output()
    digest = checkpoint.manifest_digest[:12]
    assert len(re.findall(f"eval cache: verified a copy of {digest}", log)) == 1
    assert 1 <= len(re.findall(f"loaded model {digest}", log)) <= 2  # once per process
    assert [p.stem for p in Layout(tmp_path / "cache").entries.glob("*.json")] == [
        checkpoint.manifest_digest]
