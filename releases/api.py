"""REST API of releases (DESIGN.md §4): 409 for state, 403 for permission, `detail` in words."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import BadRequest, Conflict
from models.selectors import get_checkpoint
from releases import selectors, workflow
from releases.errors import ReleaseInputError, TransitionNotAllowed
from releases.models import Release


class GateSerializer(serializers.Serializer):
    name = serializers.CharField()
    passed = serializers.BooleanField()
    reason = serializers.CharField()


class ReviewSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer.username")
    roles = serializers.ListField(child=serializers.CharField())
    decision = serializers.CharField()
    stage = serializers.CharField()
    comment = serializers.CharField()
    manifest_digest = serializers.CharField()
    policy_version = serializers.CharField(source="policy_version.content_hash")
    counts = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_counts(self, review) -> bool:
        return review.binds(self.context["release"]) and review.decision != "comment"


class ReleaseSerializer(serializers.ModelSerializer):
    checkpoint = serializers.IntegerField(source="checkpoint_id")
    family = serializers.CharField(source="checkpoint.family.repo_id")
    submitted_by = serializers.CharField(source="submitted_by.username")
    policy = serializers.SerializerMethodField()
    next_stage = serializers.SerializerMethodField()
    gates = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    url = serializers.CharField(source="get_absolute_url")

    class Meta:
        model = Release
        fields = ["id", "checkpoint", "family", "manifest_digest", "status", "current_stage",
                  "target_stage", "next_stage", "tier", "assessment", "policy", "gates",
                  "approvals", "submitted_by", "withdrawn_reason", "created_at", "updated_at",
                  "url"]

    def get_policy(self, release) -> dict:
        v = release.policy_version
        return {"name": v.name, "version": v.version, "content_hash": v.content_hash}

    def get_next_stage(self, release) -> str | None:
        if release.status in (Release.Status.PUBLISHED,):
            return release.policy_version.policy.next_stage(release.current_stage or None)
        return release.target_stage or release.policy_version.policy.next_stage(
            release.current_stage or None)

    def get_gates(self, release) -> list[dict]:
        stage = self.get_next_stage(release)
        if release.is_terminal or stage is None:
            return []
        return [{"name": g.name, "passed": g.passed, "reason": g.reason}
                for g in selectors.release_gates(release, stage=stage)]

    def get_approvals(self, release) -> list[dict]:
        return ReviewSerializer(release.reviews.select_related("reviewer", "policy_version"),
                                many=True, context={"release": release}).data


class ReleaseCreateSerializer(serializers.Serializer):
    checkpoint = serializers.IntegerField()
    assessment = serializers.DictField(child=serializers.CharField(allow_blank=True),
                                       required=False)


class ReleaseUpdateSerializer(serializers.Serializer):
    checkpoint = serializers.IntegerField(required=False)
    assessment = serializers.DictField(child=serializers.CharField(allow_blank=True),
                                       required=False)


class StageActionSerializer(serializers.Serializer):
    stage = serializers.CharField()
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class PublishSerializer(serializers.Serializer):
    stage = serializers.CharField()


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField()


class ReleaseViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ReleaseSerializer
    lookup_value_regex = r"[0-9]+"  # an id that is not a number is no route (404), never a 500

    def get_queryset(self):
        queryset = selectors.releases_visible_to(self.request.user)
        status_filter = self.request.query_params.get("status")
        if status_filter:
            queryset = queryset.filter(status=status_filter)
        return queryset

    def get_object(self):
        return selectors.get_release(self.request.user, self.kwargs["pk"])

    def _run(self, fn, **kwargs):
        try:
            release = fn(actor=self.request.user, **kwargs)
        except TransitionNotAllowed as exc:
            raise Conflict(exc.reason) from None
        except ReleaseInputError as exc:
            raise BadRequest(str(exc)) from None
        release = selectors.get_release(self.request.user, release.pk)
        return Response(ReleaseSerializer(release).data)

    @extend_schema(request=ReleaseCreateSerializer, responses={201: ReleaseSerializer})
    def create(self, request):
        data = ReleaseCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checkpoint = get_checkpoint(request.user, data.validated_data["checkpoint"])
        response = self._run(workflow.create_release, checkpoint=checkpoint,
                             assessment=data.validated_data.get("assessment"))
        response.status_code = status.HTTP_201_CREATED
        return response

    @extend_schema(request=ReleaseUpdateSerializer, responses={200: ReleaseSerializer})
    def partial_update(self, request, pk=None):
        release = self.get_object()
        data = ReleaseUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checkpoint = (get_checkpoint(request.user, data.validated_data["checkpoint"])
                      if "checkpoint" in data.validated_data else None)
        return self._run(workflow.update_release, release=release, checkpoint=checkpoint,
                         assessment=data.validated_data.get("assessment"))

    @extend_schema(request=None, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        return self._run(workflow.submit_release, release=self.get_object())

    @extend_schema(request=StageActionSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        data = self._valid(StageActionSerializer)
        return self._run(workflow.approve_release, release=self.get_object(), **data)

    @extend_schema(request=StageActionSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        data = self._valid(StageActionSerializer)
        return self._run(workflow.reject_release, release=self.get_object(), **data)

    @extend_schema(request=StageActionSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"], url_path="request-changes")
    def request_changes(self, request, pk=None):
        data = self._valid(StageActionSerializer)
        return self._run(workflow.request_changes, release=self.get_object(), **data)

    @extend_schema(request=PublishSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        data = self._valid(PublishSerializer)
        return self._run(workflow.publish_release, release=self.get_object(), **data)

    @extend_schema(request=None, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"], url_path="next-stage")
    def next_stage(self, request, pk=None):
        return self._run(workflow.request_next_stage, release=self.get_object())

    @extend_schema(request=ReasonSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        data = self._valid(ReasonSerializer)
        return self._run(workflow.withdraw_release, release=self.get_object(), **data)

    @extend_schema(request=CommentSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def comment(self, request, pk=None):
        data = self._valid(CommentSerializer)
        release = self.get_object()
        try:
            workflow.comment_on_release(actor=request.user, release=release, **data)
        except ReleaseInputError as exc:
            raise BadRequest(str(exc)) from None
        return Response(ReleaseSerializer(selectors.get_release(request.user, pk)).data)

    def _valid(self, serializer_class) -> dict:
        data = serializer_class(data=self.request.data)
        if not data.is_valid():
            first_field, errors = next(iter(data.errors.items()))
            raise BadRequest(f"{first_field}: {errors[0]}")
        return dict(data.validated_data)


