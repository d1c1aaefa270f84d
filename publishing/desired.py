"""What a target should look like, as Stagegate decides it: which release's bytes, how visible,
how gated, with which card metadata, and who is granted. Reads only.

The remote repo carries one release at a time, the family's *leading* one: the live release at
the widest published stage (partners, gated or open; the newest checkpoint among equals), so a
remote never narrows because a newer release started lower on the ladder. Once the release a
remote carries is withdrawn, the remote stays private with every access revoked: its history
holds the withdrawn bytes, and the Hub would serve them by commit to anyone let in again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import yaml

from models.blobstore import open_blob
from models.cards import CARD_LIMIT
from models.formats.layout import FileKind
from publishing.models import HubAccount, PublicationTarget
from releases import access
from releases.models import AccessGrant, Release
from releases.policy import LADDER
from releases.selectors import stage_rule
from releases.signatures import signed_files

MIRRORED_STAGES = ("partners", "gated", "open")
# The policy's form field types, as the Hub's extra_gated_fields types (models-gated.md).
HUB_FIELD_TYPES = {"text": "text", "textarea": "text", "email": "text", "url": "text",
                   "checkbox": "checkbox"}


@dataclass(frozen=True)
class DesiredFile:
    path: str
    size: int
    sha256: str  # what the remote must hold
    blob_id: str | None = None  # the manifest blob it comes from (None: generated content)
    content: bytes | None = None  # generated content (the gated card)
    manifest_sha256: str | None = None  # the manifest's sha256 when the content is generated


@dataclass(frozen=True)
class Desired:
    kind: str  # publish | withdrawn | nothing
    release: Release | None = None
    stage: str = ""
    private: bool = True
    gated: str | bool = False
    files: dict[str, DesiredFile] | None = None  # None: leave the files as they are
    accepted: dict[str, str] = field(default_factory=dict)  # hub name -> Stagegate user
    refused: frozenset[str] = frozenset()  # hub names that must not be accepted
    exclusive: bool = False  # nobody else may be accepted (partners, withdrawn)
    notes: tuple[str, ...] = ()
    reason: str = ""  # for `nothing`, in words


def leading_release(family) -> Release | None:
    live = (Release.objects.filter(checkpoint__family=family, current_stage__in=MIRRORED_STAGES,
                                   published_checkpoint__isnull=False)
            .exclude(status=Release.Status.WITHDRAWN)
            .select_related("published_checkpoint__family", "policy_version", "checkpoint"))
    return max(live, key=lambda r: (LADDER.index(r.current_stage),
                                    r.published_checkpoint.created_at, r.pk), default=None)


def desired_state(target: PublicationTarget) -> Desired:
    carried = target.carried_release
    if carried is not None:
        carried.refresh_from_db()
        if carried.status == Release.Status.WITHDRAWN:
            return Desired(kind="withdrawn", release=carried, stage=carried.current_stage,
                           private=True, gated="manual", exclusive=True,
                           reason=f"release {carried.pk} was withdrawn: "
                                  f"{carried.withdrawn_reason}")
    release = leading_release(target.family)
    if release is None:
        return Desired(kind="nothing", reason="no release of this family is published to "
                                              "partners, gated or open")
    stage = release.current_stage
    rule = stage_rule(release, stage)
    gated: str | bool = False
    if stage == "partners":
        gated = "manual"  # the Hub grants only on gated repos; partners are granted one by one
    elif stage == "gated":
        gated = "auto" if rule.access == "automatic" else "manual"
    accepted, refused, notes = _grants(target, release) if gated else ({}, frozenset(), ())
    return Desired(kind="publish", release=release, stage=stage, private=stage == "partners",
                   gated=gated, files=_files(release, rule if stage == "gated" else None),
                   accepted=accepted, refused=refused, exclusive=stage == "partners",
                   notes=notes)


def _files(release: Release, gated_rule) -> dict[str, DesiredFile]:
    checkpoint = release.published_checkpoint
    files = {f.path: DesiredFile(path=f.path, size=f.size, sha256=f.blob_id, blob_id=f.blob_id)
             for f in checkpoint.files.all()}
    # The lab's signatures of the stage, as on Stagegate's own Hub; a gated target's model.sig
    # declares README.md unsigned, since the target's card carries the Hub's access form.
    for signed in signed_files(release, for_mirror=gated_rule is not None):
        files[signed.path] = DesiredFile(path=signed.path, size=signed.size,
                                         sha256=signed.blob_id, blob_id=signed.blob_id)
    if gated_rule is not None:
        card = next((f for f in checkpoint.files.all() if f.kind == FileKind.MODEL_CARD
                     and f.path == "README.md"), None)
        readable = card is not None and card.size <= CARD_LIMIT
        original = _read_card(card.blob_id) if readable else None
        content = gated_card(original, gated_rule, checkpoint.family.repo_id)
        files["README.md"] = DesiredFile(
            path="README.md", size=len(content), sha256=hashlib.sha256(content).hexdigest(),
            content=content, manifest_sha256=card.blob_id if card is not None else None)
    return files


def _read_card(blob_id: str) -> bytes:
    with open_blob(blob_id) as stream:
        return stream.read(CARD_LIMIT + 1)


def gated_card(original: bytes | None, rule, repo_id: str) -> bytes:
    """The model card with the Hub's gate: the policy's access form as extra_gated_fields and the
    licence as extra_gated_prompt (the Hub reads both from the card's YAML front matter)."""
    text = original.decode("utf-8", errors="replace") if original else f"# {repo_id}\n"
    front: dict = {}
    body = text
    if text.startswith("---"):
        parts = text.split("---", 2)
        if len(parts) == 3:
            try:
                parsed = yaml.safe_load(parts[1])
            except yaml.YAMLError:
                parsed = None
            if isinstance(parsed, dict):
                front, body = parsed, parts[2].lstrip("\n")
    terms = rule.terms
    if terms is not None:
        front["extra_gated_prompt"] = (
            terms.text.strip() if terms.text else
            f"Access is granted under the licence {terms.licence_version}: {terms.url}")
    fields = {f.label: HUB_FIELD_TYPES[f.type] for f in rule.form_fields}
    if terms is not None:
        fields[f"I accept the licence {terms.licence_version}"] = "checkbox"
    front["extra_gated_fields"] = fields
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n{body}".encode()


def _grants(target: PublicationTarget, release: Release):
    """Whom the remote must accept: everyone Stagegate lets download the release now and whose
    Hub name a release manager recorded; whom it must not: those who had a grant and lost it."""
    users = {g.user for g in AccessGrant.objects.filter(release=release).select_related("user")}
    names = {a.user_id: a.username for a in
             HubAccount.objects.filter(endpoint=target.endpoint, user__in=users)}
    accepted, refused, missing = {}, set(), []
    for user in sorted(users, key=lambda u: u.username):
        allowed = access.download_access(user, release).allowed
        if user.pk not in names:
            if allowed:
                missing.append(user.username)
            continue
        if allowed:
            accepted[names[user.pk]] = user.username
        else:
            refused.add(names[user.pk])
    notes = tuple(f"{name} may download in Stagegate but has no account name on "
                  f"{target.endpoint}: a release manager records one (manage.py "
                  f"link_hub_account {name} --endpoint {target.endpoint} --username NAME)"
                  for name in missing)
    return accepted, frozenset(refused), notes
