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
from releases.standing import NOOP, release_standing


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
        """Binds (stage, bytes, policy) and its reviewer still holds a role it was given under."""
        if review.decision == "comment" or not review.binds(self.context["release"]):
            return False
        held = self.context["standing"]._approvals
        return any(a.username == review.reviewer.username and a.roles for a in held)


class ReleaseSerializer(serializers.ModelSerializer):
    """A release and its standing for the requesting user: one computation per release."""

    checkpoint = serializers.IntegerField(source="checkpoint_id")
    published_checkpoint = serializers.IntegerField(source="published_checkpoint_id",
                                                    allow_null=True)
    supersedes = serializers.IntegerField(source="supersedes_id", allow_null=True)
    family = serializers.CharField(source="checkpoint.family.repo_id")
    submitted_by = serializers.CharField(source="submitted_by.username")
    policy = serializers.SerializerMethodField()
    next_stage = serializers.SerializerMethodField()
    gates = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    evidence = serializers.SerializerMethodField()
    failed_evals = serializers.SerializerMethodField()
    actions = serializers.SerializerMethodField()
    url = serializers.CharField(source="get_absolute_url")

    class Meta:
        model = Release
        fields = ["id", "checkpoint", "published_checkpoint", "supersedes", "family",
                  "manifest_digest", "status", "current_stage", "target_stage", "next_stage",
                  "tier", "assessment", "policy", "gates", "approvals", "evidence",
                  "failed_evals", "actions", "submitted_by", "withdrawn_reason", "created_at",
                  "updated_at", "url"]

    def _standing(self, release):
        request = self.context.get("request")
        return release_standing(release, getattr(request, "user", None))

    def get_policy(self, release) -> dict:
        v = release.policy_version
        return {"name": v.name, "version": v.version, "content_hash": v.content_hash}

    def get_next_stage(self, release) -> str | None:
        return self._standing(release).stage

    def get_gates(self, release) -> list[dict]:
        return [{"name": g.name, "passed": g.passed, "reason": g.reason}
                for g in self._standing(release).gates]

    def get_approvals(self, release) -> list[dict]:
        return ReviewSerializer(release.reviews.select_related("reviewer", "policy_version"),
                                many=True, context={"release": release,
                                                    "standing": self._standing(release)}).data

    def get_evidence(self, release) -> dict:
        """The runs the pinned policy counts, by eval; and every other run (exploratory)."""
        evidence = self._standing(release).evidence
        return {"counted": {name: _run_ref(run) for name, run in evidence.runs.items()},
                "exploratory": [_run_ref(run) for run in evidence.exploratory]}

    def get_failed_evals(self, release) -> list[dict]:
        return self._standing(release).failed_evals

    def get_actions(self, release) -> dict:
        """For the requesting user: may they take each action now, and if not, why."""
        return {name: {"allowed": v.allowed, "reason": v.reason}
                for name, v in self._standing(release).actions.items()}


def _run_ref(run) -> dict | None:
    if run is None:
        return None
    return {"id": run.pk, "eval": run.eval_name, "status": run.status, "params": run.params,
            "cache_key": run.cache_key, "metrics": run.metrics, "error": run.error}


class ReleaseCreateSerializer(serializers.Serializer):
    checkpoint = serializers.IntegerField()
    supersedes = serializers.IntegerField(required=False, help_text="the release whose bytes "
                                          "this one replaces (a published release's bytes never "
                                          "change: new bytes are a new release)")
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

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "request": self.request}

    def _run(self, fn, *, action: str | None = None, **kwargs):
        """One workflow action; a repeated one (already done) answers 200 with a `notice`."""
        notice = None
        if action and "release" in kwargs:
            verdict = release_standing(kwargs["release"], self.request.user).verdict(
                action, stage=kwargs.get("stage"))
            notice = verdict.reason if verdict.refusal == NOOP else None
        try:
            release = fn(actor=self.request.user, **kwargs)
        except TransitionNotAllowed as exc:
            raise Conflict(exc.reason) from None
        except ReleaseInputError as exc:
            raise BadRequest(str(exc)) from None
        if not isinstance(release, Release):  # e.g. reopen_bytes returns the reopening
            release = kwargs["release"]
        release = selectors.get_release(self.request.user, release.pk)
        data = ReleaseSerializer(release, context={"request": self.request}).data
        if notice:
            data = {**data, "notice": notice}
        return Response(data)

    @extend_schema(request=ReleaseCreateSerializer, responses={201: ReleaseSerializer})
    def create(self, request):
        data = ReleaseCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checkpoint = get_checkpoint(request.user, data.validated_data["checkpoint"])
        supersedes = (selectors.get_release(request.user, data.validated_data["supersedes"])
                      if "supersedes" in data.validated_data else None)
        response = self._run(workflow.create_release, checkpoint=checkpoint,
                             assessment=data.validated_data.get("assessment"),
                             supersedes=supersedes)
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
        return self._run(workflow.submit_release, action="submit", release=self.get_object())

    @extend_schema(request=StageActionSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        data = self._valid(StageActionSerializer)
        return self._run(workflow.approve_release, action="approve", release=self.get_object(),
                         **data)

    @extend_schema(request=StageActionSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        data = self._valid(StageActionSerializer)
        return self._run(workflow.reject_release, action="reject", release=self.get_object(),
                         **data)

    @extend_schema(request=StageActionSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"], url_path="request-changes")
    def request_changes(self, request, pk=None):
        data = self._valid(StageActionSerializer)
        return self._run(workflow.request_changes, action="request_changes",
                         release=self.get_object(), **data)

    @extend_schema(request=PublishSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        data = self._valid(PublishSerializer)
        return self._run(workflow.publish_release, action="publish", release=self.get_object(),
                         **data)

    @extend_schema(request=None, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"], url_path="next-stage")
    def next_stage(self, request, pk=None):
        return self._run(workflow.request_next_stage, action="request_next_stage",
                         release=self.get_object())

    @extend_schema(request=ReasonSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        data = self._valid(ReasonSerializer)
        return self._run(workflow.withdraw_release, action="withdraw", release=self.get_object(),
                         **data)

    @extend_schema(request=ReasonSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        """A reviewer lets the bytes of this rejected (or withdrawn) release start a new one."""
        data = self._valid(ReasonSerializer)
        return self._run(workflow.reopen_bytes, action="reopen", release=self.get_object(),
                         **data)

    @extend_schema(request=CommentSerializer, responses={200: ReleaseSerializer})
    @action(detail=True, methods=["post"])
    def comment(self, request, pk=None):
        data = self._valid(CommentSerializer)
        release = self.get_object()
        try:
            workflow.comment_on_release(actor=request.user, release=release, **data)
        except ReleaseInputError as exc:
            raise BadRequest(str(exc)) from None
        return Response(ReleaseSerializer(selectors.get_release(request.user, pk),
                                          context={"request": request}).data)

    def _valid(self, serializer_class) -> dict:
        data = serializer_class(data=self.request.data)
        if not data.is_valid():
            first_field, errors = next(iter(data.errors.items()))
            raise BadRequest(f"{first_field}: {errors[0]}")
        return dict(data.validated_data)


