"""The users of benchmarks/load.py (locust): what each kind of person does, and their shares.

SEED (tokens, repos, the releases waiting) is filled in by load.py before the users start;
WAITING holds, per reviewer, the releases they have not approved yet.
"""

from __future__ import annotations

from locust import HttpUser, between, task  # noqa: I001  (first: locust patches gevent in)

import collections
import random

SEED: dict = {}
WAITING: dict[str, collections.deque] = {}
USER_CLASSES: list = []


class HubReader(HttpUser):
    """Metadata, then a file: what hf_hub_download and from_pretrained do, without the cache."""

    abstract = True
    wait_time = between(0.5, 2)
    which = "open"

    def headers(self) -> dict:
        return {}

    @task(2)
    def model_info(self) -> None:
        repo = SEED[self.which]["repo"]
        self.client.get(f"/api/models/{repo}", headers=self.headers(), name="hub model info")

    @task(1)
    def tree(self) -> None:
        repo = SEED[self.which]["repo"]
        self.client.get(f"/api/models/{repo}/tree/main", headers=self.headers(), name="hub tree")

    @task(2)
    def download(self) -> None:
        repo, files = SEED[self.which]["repo"], SEED[self.which]["files"]
        with self.client.get(f"/{repo}/resolve/main/{random.choice(files)}",
                             headers=self.headers(), name="hub resolve (302)",
                             allow_redirects=False, catch_response=True) as answer:
            if answer.status_code != 302:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
        # The bytes come from the object store, as a client following the redirect gets them.
        self.client.get(answer.headers["Location"], name="S3 presigned GET")


class OpenReader(HubReader):
    fixed_count = 0


class GatedReader(HubReader):
    fixed_count = 0
    which = "gated"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {SEED['tokens']['erin']}"}


class CatalogueBrowser(HttpUser):
    fixed_count = 0
    wait_time = between(0.5, 2)

    @task
    def catalogue(self) -> None:
        self.client.get("/models/", name="catalogue /models/")


class Reviewer(HttpUser):
    abstract = True
    wait_time = between(0.5, 1.5)
    persona = "bob"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {SEED['tokens'][self.persona]}"}

    @task(3)
    def approve(self) -> None:
        waiting = WAITING[self.persona]
        if not waiting:  # the queue is empty for this reviewer: say something instead
            return self.comment()
        release = waiting.popleft()
        with self.client.post(f"/api/v1/releases/{release}/approve/", headers=self.headers(),
                              json={"stage": "internal", "comment": "load test"},
                              name="POST approve", catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")

    @task(1)
    def comment(self) -> None:
        release = random.choice(SEED["waiting"])
        with self.client.post(f"/api/v1/releases/{release}/comment/", headers=self.headers(),
                              json={"comment": "looked at the census"},
                              name="POST comment", catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")


class Bob(Reviewer):
    fixed_count = 0


class Carol(Reviewer):
    fixed_count = 0
    persona = "carol"


def share(users: int) -> None:
    """The mix: 40% open readers, 30% gated, 20% catalogue, 10% reviewers (half each)."""
    reviewers = max(2, users // 10)
    Bob.fixed_count, Carol.fixed_count = reviewers - reviewers // 2, reviewers // 2
    CatalogueBrowser.fixed_count = max(1, users // 5)
    GatedReader.fixed_count = max(1, users * 3 // 10)
    OpenReader.fixed_count = max(1, users - reviewers - CatalogueBrowser.fixed_count
                                 - GatedReader.fixed_count)


USER_CLASSES.extend([OpenReader, GatedReader, CatalogueBrowser, Bob, Carol])
