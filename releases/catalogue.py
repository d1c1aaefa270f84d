"""The public catalogue and model pages: what a visitor may see, the card, the stage history,
the eval summary, how to download with the stock client, and asking for access."""

from __future__ import annotations

import posixpath
import unicodedata
from collections import OrderedDict
from urllib.parse import unquote, urlsplit

import markdown
import nh3
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.untrusted import parse_int, query_int
from models.blobstore import open_blob
from models.cards import model_card
from models.formats.layout import FileKind
from releases import access
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import AccessGrant, AccessRequest, Release
from releases.hub import served_files
from releases.selectors import stage_rule
from releases.signatures import served_signature
from releases.standing import release_evidence


def _visible(user, **filters):
    return list(access.discoverable_releases(user).filter(**filters)
                .order_by("-published_checkpoint__created_at", "-id"))


def catalogue(request):
    from config.listing import page_of, query_without_page

    families: OrderedDict[str, Release] = OrderedDict()
    for release in _visible(request.user):
        families.setdefault(release.published_checkpoint.family.repo_id, release)
    words = request.GET.get("q", "").lower().split()
    entries = [r for name, r in families.items()
               if all(w in f"{name} {r.published_checkpoint.family.description}".lower()
                      for w in words)]
    page = page_of(request, entries, per_page=30)
    return render(request, "releases/catalogue.html", {
        "entries": page, "page": page, "query": query_without_page(request),
        "q": request.GET.get("q", "")})


# Images a card may show: raster formats only (an SVG can carry script), from the model's own
# files, no larger than this.
CARD_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                    ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif"}
CARD_IMAGE_LIMIT = 5 * 1024 * 1024


def render_card(release: Release) -> str:
    """The model card (README.md) as sanitised HTML, YAML front matter removed. An image is
    shown only when it is one of the checkpoint's own image files (its src is rewritten to
    card_image); any other source (another site, a tracking pixel, data:, a path outside the
    checkpoint) is removed, so viewing a card never makes the browser ask anyone else."""
    files = list(release.published_checkpoint.files.all())
    card = model_card(files)
    if card is None:
        return ""
    card_file = next(f for f in files if f.kind == FileKind.MODEL_CARD)
    folder = posixpath.dirname(card_file.path)
    by_path = {f.path: f for f in files}

    def own_image(value: str) -> str | None:
        parts = urlsplit(value.strip())
        if parts.scheme or parts.netloc or value.strip().startswith(("/", "\\")):
            return None
        path = posixpath.normpath(posixpath.join(folder, unquote(parts.path)))
        path = unicodedata.normalize("NFC", path)
        file = by_path.get(path)
        if (file is None or path.startswith("../")
                or posixpath.splitext(path)[1].lower() not in CARD_IMAGE_TYPES
                or file.size > CARD_IMAGE_LIMIT):
            return None
        family = release.published_checkpoint.family
        return reverse("releases:card-image", args=[family.org, family.name, release.pk, path])

    def attribute_filter(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src":
            return own_image(value)
        return value

    html = markdown.markdown(card.body, extensions=["fenced_code", "tables"])
    return nh3.clean(html, attribute_filter=attribute_filter)


def card_image(request, org: str, name: str, release_id: int, path: str):
    """One image file of a model's card, for whoever may see the model page."""
    release = get_object_or_404(access.discoverable_releases(request.user), pk=release_id,
                                published_checkpoint__family__org=org,
                                published_checkpoint__family__name=name)
    suffix = posixpath.splitext(path)[1].lower()
    file = release.published_checkpoint.files.filter(path=path).first()
    if file is None or suffix not in CARD_IMAGE_TYPES or file.size > CARD_IMAGE_LIMIT:
        raise Http404("no such image in this model's card")
    response = FileResponse(open_blob(file.blob_id), content_type=CARD_IMAGE_TYPES[suffix])
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def model_page(request, org: str, name: str):
    releases = _visible(request.user, published_checkpoint__family__org=org,
                        published_checkpoint__family__name=name)
    if not releases:
        raise Http404("no such model that you can see")
    label = request.GET.get("rev")
    release = (next((r for r in releases if r.published_checkpoint.label == label), None)
               if label else None)
    release = release or next((r for r in releases if r.status != "withdrawn"), releases[0])
    decision = access.download_access(request.user, release)
    rule = stage_rule(release, "gated") if release.current_stage == "gated" else None
    # The licence checkbox is the page's own; a policy field that asks the same is folded in.
    folded = [f for f in rule.form_fields if f.type == "checkbox" and f.name == "accept"] \
        if rule else []
    pending = (AccessRequest.objects.filter(release=release, user=request.user,
                                            status=AccessRequest.Status.PENDING).first()
               if request.user.is_authenticated else None)
    # The results that counted: the pinned policy's evidence runs for the served bytes.
    runs = sorted((r for r in release_evidence(release).runs.values()
                   if r is not None and r.status == "succeeded"), key=lambda r: r.eval_name)
    served = release.published_checkpoint
    return render(request, "releases/model_page.html", {
        "release": release, "checkpoint": served, "family": served.family,
        "others": [r for r in releases if r.pk != release.pk],
        "card": render_card(release), "decision": decision, "rule": rule, "pending": pending,
        "form_fields": [f for f in (rule.form_fields if rule else ()) if f not in folded],
        "accept_label": folded[0].label if folded else (
            f"I accept the licence {rule.terms.licence_version}" if rule and rule.terms else
            "I accept the terms"),
        "publications": release.publications.select_related("published_by"),
        "runs": runs, "files": served_files(release),
        "signature": served_signature(release), "signing_keys": _published_keys(),
        # The address this page was reached at: what the reader pastes works from where they are.
        "site": request.build_absolute_uri("/").rstrip("/"),
    })


def _published_keys() -> list:
    from signing.keys import SigningKeyMissing, published_keys

    try:
        return published_keys()
    except SigningKeyMissing:
        return []


@login_required
@require_POST
def request_access_view(request, org: str, name: str, release_id: int):
    # Only releases the caller can discover: a hidden one answers like a missing one.
    release = get_object_or_404(access.discoverable_releases(request.user), pk=release_id,
                                published_checkpoint__family__org=org,
                                published_checkpoint__family__name=name)
    rule = stage_rule(release, "gated")
    # `accept` is the licence checkbox, recorded as the licence version accepted, not an answer.
    answers = {f.name: (request.POST.get(f.name) == "on" if f.type == "checkbox"
                        else request.POST.get(f.name, "")) for f in rule.form_fields
               if f.name != "accept"}
    try:
        result = access.request_access(actor=request.user, release=release, answers=answers,
                                       licence_version=request.POST.get("licence_version", ""),
                                       accept=request.POST.get("accept") == "on")
    except (TransitionNotAllowed, ReleaseInputError, PermissionDenied) as exc:
        messages.error(request, getattr(exc, "reason", None) or str(exc))
    else:
        messages.success(request, "Access granted: you can download the weights now."
                         if result.status == "approved" else
                         "Request sent: a release manager will decide on it.")
    return redirect("releases:model-page", org=org, name=name)


@login_required
def access_admin(request):
    """Pending access requests (bulk decisions), grants (revocation), partners (naming)."""
    revocable = list(access.manageable_releases(request.user, granting=False))
    if not revocable:
        raise PermissionDenied("managing access needs the release_managers role or family ownership")
    # Deciding and naming partners is never for a release's own submitter or uploader.
    manageable = [r for r in revocable if access.can_grant_access(request.user, r)]
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action in ("approve", "reject"):
                ids = [parse_int(i, what="request", minimum=1)
                       for i in request.POST.getlist("request")]
                if not ids:
                    raise ReleaseInputError("tick at least one request")
                # Requests on releases one does not manage are skipped like missing ones.
                ids = list(AccessRequest.objects.filter(pk__in=ids, release__in=manageable)
                           .values_list("pk", flat=True))
                access.decide_access_requests(actor=request.user, request_ids=ids,
                                              approve=action == "approve",
                                              reason=request.POST.get("reason", ""))
                messages.success(request, f"{len(ids)} request(s) {action}d.")
            elif action == "revoke":
                grant = get_object_or_404(AccessGrant, pk=query_int(request.POST, "grant"),
                                          release__in=manageable)
                access.revoke_grant(actor=request.user, grant=grant,
                                    reason=request.POST.get("reason", ""))
                messages.success(request, f"Access of {grant.user} revoked.")
            elif action == "partner":
                from django.contrib.auth import get_user_model

                release = get_object_or_404(access.discoverable_releases(request.user),
                                            pk=query_int(request.POST, "release"))
                user = get_user_model().objects.filter(username=request.POST.get("user")).first()
                if user is None:
                    raise ReleaseInputError(f"no user named {request.POST.get('user')!r}")
                access.grant_partner_access(actor=request.user, release=release, user=user,
                                            agreement_note=request.POST.get("agreement_note", ""))
                messages.success(request, f"{user} is now a partner of release {release.pk}.")
        except (TransitionNotAllowed, ReleaseInputError, PermissionDenied) as exc:
            messages.error(request, getattr(exc, "reason", None) or str(exc))
        return redirect("releases:access-admin")
    from config.listing import page_of, query_without_page, search

    ids = [r.pk for r in manageable]
    q = request.GET.get("q", "")
    fields = ("user__username", "release__checkpoint__family__org",
              "release__checkpoint__family__name", "release__checkpoint__label")
    grants = page_of(request, search(AccessGrant.objects.filter(
        release_id__in=[r.pk for r in revocable]).select_related(
        "user", "release__checkpoint__family"), q, *fields))
    return render(request, "releases/access_admin.html", {
        "pending": search(AccessRequest.objects.filter(release_id__in=ids, status="pending")
                          .select_related("user", "release__checkpoint__family"), q, *fields),
        "grants": grants, "page": grants, "query": query_without_page(request), "q": q,
        "releases": [r for r in manageable if r.current_stage in ("partners", "gated", "open")
                     or r.status == "approved"],
    })
