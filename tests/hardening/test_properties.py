"""Property-based (hypothesis): no value of the API's filters, and no Hub repo, revision, path
or query, gives a 5xx. Sent to a live server over real HTTP, as bytes a client chose: any
Unicode, control characters, invalid UTF-8 percent-escapes, huge numbers."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests
from django.test import override_settings
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.hardening.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# Text a client can put in a URL: every code point but surrogates (which no encoding can send).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
raw_bytes = st.binary(max_size=24).map(lambda b: "".join(f"%{c:02X}" for c in b))
numbers = st.integers(min_value=-(10**30), max_value=10**30).map(str)
interesting = st.sampled_from(["", "0", "-1", "1e9", "NaN", "null", "[]", "{}", "../..", "%00",
                               "main", "open", "gated", "a" * 5000, "2026-02-30", "1" * 400,
                               "releases.release:1", "releases.release:abc", ":", "%", "%%"])


def encoded(strategy):
    return strategy.map(lambda value: quote(value, safe=""))


value = st.one_of(encoded(text), raw_bytes, encoded(numbers), encoded(interesting),
                  st.sampled_from(["%", "%zz", "%E9", "%ED%A0%80", "%C0%AF"]))

FILTERS = [
    ("/api/v1/releases/", ["status", "page"]),
    ("/api/v1/access-requests/", ["status"]),
    ("/api/v1/checkpoints/", ["family", "page"]),
    ("/api/v1/families/", ["page"]),
    ("/api/v1/evals/runs/", ["checkpoint"]),
    ("/api/v1/audit/", ["verb", "actor", "object", "since", "until", "page"]),
]


def _assert_no_5xx(response, url) -> None:
    assert response.status_code < 500, f"{response.status_code} for {url}: {response.text[:300]}"


def test_no_api_filter_value_gives_a_5xx(hub_world, stagegate_server):
    _, _, tokens = hub_world
    session = requests.Session()
    session.headers.update(bearer(tokens["dave"]))

    @EXAMPLES
    @given(endpoint=st.sampled_from(FILTERS), data=st.data())
    def check(endpoint, data):
        path, names = endpoint
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        query = "&".join(f"{name}={data.draw(value)}" for name in chosen)
        url = f"{stagegate_server.url}{path}?{query}"
        _assert_no_5xx(session.get(url), url)

    check()


segment = st.one_of(encoded(text.filter(bool)), raw_bytes.filter(bool), encoded(interesting.filter(bool)),
                    st.sampled_from(["main", "open", "gated", "partners", "internal", "v1",
                                     "refs%2Fpr%2F1", "0" * 40, "f" * 40]))
repo = st.sampled_from(["lab/open-gpt", "lab/gated-gpt", "lab/partner-gpt", "lab/none", "x/y"])
file_path = st.one_of(st.sampled_from(["model.safetensors", "config.json", "a/b/c.json",
                                       "..%2F..%2Fetc%2Fpasswd", "README.md"]),
                      st.lists(segment, min_size=1, max_size=4).map("/".join))


@override_settings(AXES_FAILURE_LIMIT=10**6)  # bad tokens here must not lock the good ones out
def test_no_hub_path_revision_or_query_gives_a_5xx(hub_world, stagegate_server):
    _, _, tokens = hub_world
    token_choice = st.sampled_from([None, tokens["erin"], tokens["mallory"], "sg_not-a-token"])

    @EXAMPLES
    @given(kind=st.sampled_from(["info", "revision", "tree", "resolve"]), repo_id=repo,
           rev=segment, path=file_path, token=token_choice,
           method=st.sampled_from(["GET", "HEAD"]), query=st.one_of(st.just(""), value.map(
               lambda v: f"?recursive={v}&cursor={v}&blobs={v}")))
    def check(kind, repo_id, rev, path, token, method, query):
        url = {"info": f"/api/models/{repo_id}",
               "revision": f"/api/models/{repo_id}/revision/{rev}",
               "tree": f"/api/models/{repo_id}/tree/{rev}/{path}",
               "resolve": f"/{repo_id}/resolve/{rev}/{path}"}[kind] + query
        response = requests.request(method, stagegate_server.url + url, headers=bearer(token),
                                    allow_redirects=False)
        _assert_no_5xx(response, url)
        assert response.status_code != 429, "locked out: the test no longer reaches the Hub"
        if response.status_code >= 400:
            # Every Hub error carries the headers the client reads.
            assert "X-Error-Message" in response.headers, url

    check()
