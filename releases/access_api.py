"""REST API of access (DESIGN.md §4): access requests, decisions, partner grants, revocation."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import BadRequest, Conflict
from releases import access
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import AccessGrant, AccessRequest, Release


class AccessRequestSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    release = serializers.IntegerField(source="release_id")
    family = serializers.CharField(source="release.checkpoint.family.repo_id")
    decided_by = serializers.CharField(source="decided_by.username", default=None)

    class Meta:
        model = AccessRequest
        fields = ["id", "release", "family", "user", "stage", "answers", "licence_version",
                  "status", "decided_by", "decided_at", "decision_reason", "created_at"]


class GrantSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    release = serializers.IntegerField(source="release_id")

    class Meta:
        model = AccessGrant
        fields = ["id", "release", "user", "stage", "licence_version", "agreement_note",
                  "granted_at", "expires_at", "revoked_at", "revoke_reason"]


class RequestAccessSerializer(serializers.Serializer):
    licence_version = serializers.CharField()
    accept = serializers.BooleanField()
    answers = serializers.DictField(required=False, help_text="the policy's form fields; they "
                                    "may also be sent at the top level")


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class BulkDecisionSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField())
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class PartnerGrantSerializer(serializers.Serializer):
    user = serializers.CharField()
    agreement_note = serializers.CharField()
    expires_at = serializers.DateTimeField(required=False)


def _refusals(fn):
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TransitionNotAllowed as exc:
            raise Conflict(exc.reason) from None
        except ReleaseInputError as exc:
            raise BadRequest(str(exc)) from None
    return wrapped


def _visible_release(request, release_id) -> Release:
    return get_object_or_404(access.discoverable_releases(request.user), pk=release_id)


# Ids the caller may not see answer exactly like ids that do not exist (404, same message):
# one's own requests and grants, and those of the releases one manages (a submitter sees those
# of her own release, and is refused, with a reason, if she tries to decide them).
def _visible_requests(user):
    from django.db.models import Q

    return AccessRequest.objects.filter(Q(user_id=user.pk)
                                        | Q(release__in=access.manageable_releases(user, granting=False)))


def _visible_grants(user):
    from django.db.models import Q

    return AccessGrant.objects.filter(Q(user_id=user.pk)
                                      | Q(release__in=access.manageable_releases(user, granting=False)))


class ReleaseAccessRequestsView(APIView):
    @extend_schema(request=RequestAccessSerializer, responses={201: AccessRequestSerializer})
    @_refusals
    def post(self, request, release_id: int):
        """Ask for access to a gated release: the policy's form fields, the licence version
        accepted, and `accept: true`."""
        release = _visible_release(request, release_id)
        data = dict(request.data)
        answers = data.pop("answers", {}) or {}
        if not isinstance(answers, dict):
            raise BadRequest("answers: send an object of the policy's form fields")
        answers = dict(answers)
        answers.update({k: v for k, v in data.items() if k not in ("licence_version", "accept")})
        if "licence_version" not in request.data:
            raise BadRequest("licence_version: say which licence version you accept")
        result = access.request_access(actor=request.user, release=release, answers=answers,
                                       licence_version=str(request.data["licence_version"]),
                                       accept=request.data.get("accept") in (True, "true", "1", 1))
        return Response(AccessRequestSerializer(result).data, status=status.HTTP_201_CREATED)


class AccessRequestListView(APIView):
    @extend_schema(responses={200: AccessRequestSerializer(many=True)}, parameters=[
        OpenApiParameter("status", str, description="e.g. pending")])
    def get(self, request):
        """Access requests you may decide (or your own); filter with ?status=pending."""
        requests_ = (_visible_requests(request.user).select_related("release__checkpoint__family", "user", "decided_by").order_by("-id"))
        if request.query_params.get("status"):
            requests_ = requests_.filter(status=request.query_params["status"])
        return Response(AccessRequestSerializer(requests_, many=True).data)


class AccessRequestDecisionView(APIView):
    approve = True

    @extend_schema(request=DecisionSerializer, responses={200: AccessRequestSerializer})
    @_refusals
    def post(self, request, request_id: int):
        access_request = get_object_or_404(_visible_requests(request.user), pk=request_id)
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decided = access.decide_access_request(actor=request.user, request=access_request,
                                               approve=self.approve,
                                               reason=data.validated_data["reason"])
        return Response(AccessRequestSerializer(decided).data)


class AccessRequestRejectView(AccessRequestDecisionView):
    approve = False


class AccessRequestBulkView(APIView):
    @extend_schema(request=BulkDecisionSerializer, responses={200: AccessRequestSerializer(many=True)})
    @_refusals
    def post(self, request):
        """Approve or reject several requests at once."""
        data = BulkDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = set(data.validated_data["ids"])
        if len(ids) != _visible_requests(request.user).filter(pk__in=ids).count():
            raise Http404("No AccessRequest matches the given query.")
        decided = access.decide_access_requests(
            actor=request.user, request_ids=data.validated_data["ids"],
            approve=data.validated_data["decision"] == "approve",
            reason=data.validated_data["reason"])
        return Response(AccessRequestSerializer(decided, many=True).data)


class ReleaseGrantsView(APIView):
    @extend_schema(responses={200: GrantSerializer(many=True)})
    def get(self, request, release_id: int):
        release = _visible_release(request, release_id)
        if not access.can_manage_access(request.user, release):
            return Response(GrantSerializer(release.grants.filter(user=request.user), many=True).data)
        return Response(GrantSerializer(release.grants.select_related("user"), many=True).data)

    @extend_schema(request=PartnerGrantSerializer, responses={201: GrantSerializer})
    @_refusals
    def post(self, request, release_id: int):
        """Name a partner (with the agreement and, optionally, an expiry)."""
        release = _visible_release(request, release_id)
        data = PartnerGrantSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_user_model().objects.filter(username=data.validated_data["user"]).first()
        if user is None:
            raise BadRequest(f"no user named {data.validated_data['user']!r}")
        grant = access.grant_partner_access(
            actor=request.user, release=release, user=user,
            agreement_note=data.validated_data["agreement_note"],
            expires_at=data.validated_data.get("expires_at"))
        return Response(GrantSerializer(grant).data, status=status.HTTP_201_CREATED)


class GrantRevokeView(APIView):
    @extend_schema(request=DecisionSerializer, responses={200: GrantSerializer})
    def post(self, request, grant_id: int):
        grant = get_object_or_404(_visible_grants(request.user), pk=grant_id)
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        revoked = access.revoke_grant(actor=request.user, grant=grant,
                                      reason=data.validated_data["reason"])
        return Response(GrantSerializer(revoked).data)
