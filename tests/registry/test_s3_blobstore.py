"""The blob store on S3: STAGEGATE_BLOB_STORAGE=s3 against a real S3 server on loopback (moto's,
which speaks the S3 REST protocol), through the same Storage API calls the filesystem store gets.

Submission, deduplication, scanning and materialising for an eval read and write the bucket; a
worker process configured only by environment variables shares it; downloads in `redirect` mode
answer with a presigned URL that the stock Hub client follows, and nobody gets one without access.
"""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import requests
import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import GatedRepoError

from evaluations import services as eval_services
from evaluations.models import EvalRun
from models import blobstore, scanning, services
from models.materialize import materialized
from tests.checkpoints import write_model_folder
from tests.conftest import staged_files, token_for
from tests.eval_runs.conftest import submit_folder
from tests.registry.test_tasks import wait_for
from tests.releases.stages import grant, release_at

def pytorch_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3, 4), "b": torch.zeros(4, dtype=torch.float16)}, buffer)
    return buffer.getvalue()


@pytest.mark.django_db
def test_submissions_put_each_blob_in_the_bucket_once(bucket, alice, tmp_path):
    staged_before = staged_files()
    folder = write_model_folder(tmp_path / "ckpt")
    first = submit_folder(alice, folder, family="lab/s3", label="a")
    second = submit_folder(alice, folder, family="lab/s3", label="b")

    blob_ids = set(first.files.values_list("blob_id", flat=True))
    assert blob_ids == set(second.files.values_list("blob_id", flat=True))
    assert bucket.keys() == {blobstore.blob_name(b) for b in blob_ids}
    for blob_id in blob_ids:
        assert hashlib.sha256(bucket.read(blobstore.blob_name(blob_id))).hexdigest() == blob_id
    assert first.parameters > 0 and first.census == second.census
    assert staged_files() == staged_before, "staged files left behind"


@pytest.mark.django_db
def test_a_refused_submission_leaves_nothing_in_the_bucket(bucket, alice):
    staged = [blobstore.stage_chunks("model.safetensors", [b"\x05\0\0\0\0\0\0\0{oops"])]
    with pytest.raises(services.SubmissionError):
        services.submit_checkpoint(actor=alice, family_name="lab/s3", label="bad", files=staged)
    assert bucket.keys() == set()


@pytest.mark.django_db
def test_a_pytorch_file_is_scanned_and_materialised_from_the_bucket(bucket, alice):
    data = pytorch_bytes()
    staged = [blobstore.stage_chunks("pytorch_model.bin", [data]),
              blobstore.stage_chunks("config.json", [json.dumps({"model_type": "x"}).encode()])]
    checkpoint = services.submit_checkpoint(actor=alice, family_name="lab/s3", label="pt",
                                            files=staged)
    checkpoint = scanning.scan_checkpoint(checkpoint_id=checkpoint.pk)
    assert checkpoint.status == "ready"
    assert {t["name"] for t in checkpoint.census["largest_tensors"]} == {"w", "b"}
    with materialized(checkpoint) as folder:
        local = folder / "pytorch_model.bin"
        assert not local.is_symlink() and local.read_bytes() == data


@pytest.mark.django_db
def test_a_blob_is_copied_from_the_bucket_for_the_eval_cache_with_its_hash(bucket, alice,
                                                                          tmp_path):
    from models.materialize import copy_blob

    data = pytorch_bytes()
    staged = blobstore.stage_chunks("pytorch_model.bin", [data])
    services.submit_checkpoint(actor=alice, family_name="lab/s3", label="copy", files=[staged])
    counted = []
    sha256, size = copy_blob(staged.sha256, tmp_path / "copy.bin", counted.append)
    assert (sha256, size) == (hashlib.sha256(data).hexdigest(), len(data)) == (
        staged.sha256, sum(counted))
    assert (tmp_path / "copy.bin").read_bytes() == data
    with pytest.raises(FileNotFoundError):
        copy_blob("0" * 64, tmp_path / "missing.bin", counted.append)


@pytest.mark.django_db(transaction=True)
def test_a_worker_configured_for_the_bucket_evaluates_what_the_web_process_stored(
        bucket, start_worker, tmp_path, personas, simple_policy):
    alice = personas.alice
    checkpoint = submit_folder(alice, write_model_folder(tmp_path / "ckpt"), family="lab/s3")
    start_worker("s3", extra_env=bucket.env)

    run = eval_services.request_evals(actor=None, checkpoint=checkpoint,
                                      eval_names=["integrity"])[0]
    run = wait_for(lambda: EvalRun.objects.filter(pk=run.pk, status__in=EvalRun.FINISHED).first())
    assert run.status == "succeeded" and run.metrics["passed"] == 1

    # Bytes changed in the bucket behind Stagegate's back: the next checkpoint that shares the
    # blob (deduplicated, so never uploaded again) fails integrity, closed, and names the file.
    tampered = checkpoint.files.get(path="config.json")
    bucket.client.put_object(Bucket=bucket.name, Key=blobstore.blob_name(tampered.blob_id),
                             Body=b'{"model_type": "gpt2", "tampered": true}')
    folder = write_model_folder(tmp_path / "ckpt2")
    (folder / "README.md").write_text("# Tiny, second card\n")
    second = submit_folder(alice, folder, family="lab/s3", label="second")
    assert second.files.get(path="config.json").blob_id == tampered.blob_id
    rerun = eval_services.request_evals(actor=None, checkpoint=second,
                                        eval_names=["integrity"])[0]
    rerun = wait_for(lambda: EvalRun.objects.filter(pk=rerun.pk,
                                                    status__in=EvalRun.FINISHED).first())
    assert rerun.status == "failed" and "config.json: " in rerun.error, rerun.error


@pytest.mark.django_db(transaction=True)
def test_redirect_downloads_send_granted_users_to_a_presigned_url(bucket, stagegate_server,
                                                                  tiny_model_dir, tmp_path,
                                                                  settings, personas,
                                                                  simple_policy):
    settings.STAGEGATE_DOWNLOAD_MODE = "redirect"
    people = personas
    release = release_at(people, "gated", family="lab/s3-gated", folder=tiny_model_dir)
    grant(people, release, people.erin)
    file = release.checkpoint.files.get(path="model.safetensors")
    url = f"{stagegate_server.url}/lab/s3-gated/resolve/main/model.safetensors"

    refused = requests.get(url, headers={"Authorization": f"Bearer {token_for(people.mallory)}"},
                           allow_redirects=False)
    assert refused.status_code == 403 and "Location" not in refused.headers
    with pytest.raises(GatedRepoError):
        hf_hub_download("lab/s3-gated", "model.safetensors", endpoint=stagegate_server.url,
                        token=token_for(people.mallory, "read"), cache_dir=tmp_path / "m")

    erin = token_for(people.erin, "read")
    answer = requests.get(url, headers={"Authorization": f"Bearer {erin}"}, allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(f"{bucket.endpoint}/{bucket.name}/")
    assert "Signature" in answer.headers["Location"]
    assert answer.headers["X-Repo-Commit"] == release.checkpoint.commit

    path = hf_hub_download("lab/s3-gated", "model.safetensors", endpoint=stagegate_server.url,
                           token=erin, cache_dir=tmp_path / "e")
    with open(path, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == file.blob_id


def test_an_upload_to_the_bucket_runs_at_bulk_priority(bucket):
    """Storing a blob on S3 is the one slow step of a submission after its bytes arrived: it
    runs in threads at STAGEGATE_BULK_NICE (seen in the kernel while it runs), the caller's
    thread keeps its priority, and the bucket holds exactly the bytes."""
    import os
    import threading

    from tests.registry.test_uploads_live import _threads_at_bulk_priority

    data = os.urandom(24 * 1024 * 1024)  # above boto3's multipart threshold: several threads
    staged = blobstore.stage_chunks("model.safetensors", [data])
    seen: set[int] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(_threads_at_bulk_priority())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert blobstore.store(staged) is True
    finally:
        done.set()
        watcher.join()
    assert seen, "no thread ran at bulk priority during the upload"
    assert threading.get_native_id() not in seen
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0
    assert not _threads_at_bulk_priority(), "the upload's threads are gone"
    assert bucket.read(blobstore.blob_name(staged.sha256)) == data
