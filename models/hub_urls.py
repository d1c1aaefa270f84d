"""Routes of the Hub write API and the Xet CAS, next to the read side's (releases.hub)."""

from __future__ import annotations

from django.urls import re_path

from models import hub_views
from models.cas_views import cas_urls

REPO = r"(?P<org>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*?)"
REV = r"(?P<rev>refs/(?:pr/\d+|convert/\w+)|[^/]+)"


def hub_write_urls():
    return [
        re_path(r"^api/repos/create$", hub_views.create_repo, name="hub-repo-create"),
        re_path(r"^api/whoami-v2$", hub_views.whoami, name="hub-whoami"),
        re_path(r"^api/validate-yaml$", hub_views.validate_yaml, name="hub-validate-yaml"),
        re_path(rf"^api/models/{REPO}/settings$", hub_views.repo_settings, name="hub-settings"),
        re_path(rf"^api/models/{REPO}/preupload/{REV}$", hub_views.preupload,
                name="hub-preupload"),
        re_path(rf"^api/models/{REPO}/commit/{REV}$", hub_views.commit, name="hub-commit"),
        re_path(rf"^api/models/{REPO}/xet-write-token/{REV}$", hub_views.xet_write_token,
                name="hub-xet-write-token"),
        re_path(rf"^{REPO}\.git/info/lfs/objects/batch$", hub_views.lfs_batch, name="lfs-batch"),
        re_path(rf"^{REPO}\.git/info/lfs/objects/verify$", hub_views.lfs_verify,
                name="lfs-verify"),
        re_path(r"^api/lfs/objects/(?P<signed>[A-Za-z0-9_:.-]+)/parts/(?P<number>\d+)$",
                hub_views.lfs_part, name="lfs-part"),
        re_path(r"^api/lfs/objects/(?P<signed>[A-Za-z0-9_:.-]+)$", hub_views.lfs_object,
                name="lfs-object"),
        re_path(rf"^{REPO}/commit/(?P<oid>[0-9a-f]{{40}})$", hub_views.commit_page,
                name="hub-commit-page"),
        *cas_urls(),
    ]
