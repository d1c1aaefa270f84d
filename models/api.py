"""REST API of the registry: /api/v1/families/, /api/v1/checkpoints/, /api/v1/uploads/."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import StrictJSONParser
from models import conversion, scanning, selectors, services
from models.errors import SubmissionError
from models.models import UploadSession
from models.serializers import (
    AcceptRiskSerializer,
    CheckpointSerializer,
    CheckpointSubmitSerializer,
    CheckpointSummarySerializer,
    FamilySerializer,
    UploadSessionCreateSerializer,
)
from models.uploads import install_upload_handler, staged_from_body, staged_from_multipart


class SubmissionRefused(APIException):
    def __init__(self, error: SubmissionError):
        self.status_code = error.status
        super().__init__(detail=error.message)


class _PassThroughParser(BaseParser):
    """Leaves multipart and raw bodies to HashingUploadHandler / streaming reads."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


# The family's id is `org/name`: documented as a plain string (the `/` percent-encoded), since
# the route's regex is no pattern a client can generate values from.
_REPO_ID = OpenApiParameter("repo_id", str, OpenApiParameter.PATH,
                            description="the family, org/name (e.g. eleuther%2Fpythia-70m)")


@extend_schema_view(retrieve=extend_schema(parameters=[_REPO_ID]),
                    checkpoints=extend_schema(parameters=[_REPO_ID],
                                              responses={200: OpenApiTypes.OBJECT}))
class FamilyViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = FamilySerializer
    lookup_value_regex = r"[^/]+/[^/]+"
    lookup_field = "repo_id"

    def get_queryset(self):
        return selectors.families_visible_to(self.request.user)

    def get_object(self):
        org, _, name = self.kwargs["repo_id"].partition("/")
        return selectors.get_family(self.request.user, org, name)

    @action(detail=True)
    def checkpoints(self, request, repo_id=None):
        family = self.get_object()
        queryset = selectors.checkpoints_visible_to(request.user).filter(family=family)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(CheckpointSummarySerializer(page, many=True).data)


class CheckpointViewSet(viewsets.ReadOnlyModelViewSet):
    token_scope = {"create": "submit"}
    lookup_value_regex = r"[0-9]+"  # an id that is not a number is no route (404), never a 500

    def get_queryset(self):
        queryset = selectors.checkpoints_visible_to(self.request.user)
        family = self.request.query_params.get("family")
        if family and "/" in family:
            org, _, name = family.partition("/")
            queryset = queryset.filter(family__org=org, family__name=name)
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("files")
        return queryset

    def get_serializer_class(self):
        return CheckpointSerializer if self.action == "retrieve" else CheckpointSummarySerializer

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST" and request.path.rstrip("/").endswith("/checkpoints"):
            install_upload_handler(request)
        return super().initialize_request(request, *args, **kwargs)

    def get_parsers(self):
        # Parsers are chosen before `action` is set, so the submission is recognised by its
        # path: only POST /checkpoints/ streams files through HashingUploadHandler.
        request = getattr(self, "request", None)
        if getattr(self, "action", None) == "create" or (
                request is not None and request.method == "POST"
                and request.path.rstrip("/").endswith("/checkpoints")):
            return [_PassThroughParser()]
        return super().get_parsers()

    @extend_schema(request={"multipart/form-data": CheckpointSubmitSerializer},
                   responses={201: CheckpointSerializer})
    def create(self, request):
        """Submit a checkpoint as multipart/form-data: `family`, `label` and the files."""
        try:
            fields, staged = staged_from_multipart(request._request)
            checkpoint = services.submit_checkpoint(
                actor=request.user, family_name=fields.get("family", ""),
                label=fields.get("label", ""), files=staged)
        except SubmissionError as exc:
            raise SubmissionRefused(exc) from None
        return Response(CheckpointSerializer(checkpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AcceptRiskSerializer, responses={200: CheckpointSerializer})
    @action(detail=True, methods=["post"], url_path="accept-risk")
    def accept_risk(self, request, pk=None):
        """A safety reviewer accepts the risk of one file whose scan verdict is `unknown`."""
        checkpoint = selectors.get_checkpoint(request.user, pk)
        data = AcceptRiskSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        file = checkpoint.files.filter(path=data.validated_data["path"]).first()
        if file is None:
            raise NotFound(f"{checkpoint} has no file {data.validated_data['path']!r}")
        try:
            scanning.accept_scan_risk(actor=request.user, file=file,
                                      justification=data.validated_data["justification"])
        except SubmissionError as exc:
            raise SubmissionRefused(exc) from None
        checkpoint.refresh_from_db()
        return Response(CheckpointSerializer(checkpoint).data)

    @extend_schema(request=None, responses={202: None, 200: CheckpointSerializer})
    @action(detail=True, methods=["post"])
    def convert(self, request, pk=None):
        """Convert a scanned-safe PyTorch checkpoint to safetensors (a new checkpoint of the
        family, `converted_from` this one). 202 while it runs; 200 with it once it exists."""
        checkpoint = selectors.get_checkpoint(request.user, pk)
        try:
            done = conversion.request_conversion(actor=request.user, checkpoint=checkpoint)
        except SubmissionError as exc:
            raise SubmissionRefused(exc) from None
        if done is not None:
            return Response(CheckpointSerializer(done).data)
        return Response({"detail": "conversion queued"}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True)
    def manifest(self, request, pk=None):
        checkpoint = selectors.get_checkpoint(request.user, pk)
        files = [{"path": f.path, "sha256": f.blob_id, "size": f.size}
                 for f in checkpoint.files.all()]
        return Response({"manifest_digest": checkpoint.manifest_digest, "files": files})


class UploadSessionCreateView(APIView):
    token_scope = "submit"
    parser_classes = [StrictJSONParser]

    @extend_schema(request=UploadSessionCreateSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        """Open an upload session; then PUT each file and POST commit/."""
        data = UploadSessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            session = services.create_upload_session(
                actor=request.user, family_name=data.validated_data["family"],
                label=data.validated_data["label"])
        except SubmissionError as exc:
            raise SubmissionRefused(exc) from None
        return Response(_session_json(session), status=status.HTTP_201_CREATED)


class UploadSessionView(APIView):
    token_scope = "submit"

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, session_id: int):
        session = get_object_or_404(UploadSession, pk=session_id, created_by=request.user)
        return Response(_session_json(session))

    @extend_schema(responses={204: None})
    def delete(self, request, session_id: int):
        services.abort_upload_session(actor=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadFileView(APIView):
    token_scope = "submit"
    parser_classes = [_PassThroughParser]

    @extend_schema(parameters=[OpenApiParameter("sha256", str, description="expected sha256; "
                                                "the upload is refused if the bytes differ")],
                   request={"application/octet-stream": bytes},
                   responses={201: OpenApiTypes.OBJECT})
    def put(self, request, session_id: int, path: str):
        """Stream one file's bytes as the request body."""
        try:
            # Session, ownership, path and declared size, before a byte of the body is read.
            services.check_upload_file(actor=request.user, session_id=session_id, path=path)
            staged = staged_from_body(request._request, path)
            entry = services.put_upload_file(actor=request.user, session_id=session_id,
                                             path=path, staged=staged,
                                             expected_sha256=request.query_params.get("sha256"))
        except SubmissionError as exc:
            raise SubmissionRefused(exc) from None
        return Response({"path": entry.path, "size": entry.size, "sha256": entry.blob_id},
                        status=status.HTTP_201_CREATED)


class UploadCommitView(APIView):
    token_scope = "submit"

    @extend_schema(request=None, responses={201: CheckpointSerializer})
    def post(self, request, session_id: int):
        try:
            checkpoint = services.commit_upload_session(actor=request.user, session_id=session_id)
        except SubmissionError as exc:
            raise SubmissionRefused(exc) from None
        return Response(CheckpointSerializer(checkpoint).data, status=status.HTTP_201_CREATED)


def _session_json(session: UploadSession) -> dict:
    return {"id": session.pk, "family": session.family_name, "label": session.label,
            "status": session.status, "expires_at": session.expires_at,
            "files": [{"path": f.path, "size": f.size, "sha256": f.blob_id}
                      for f in session.files.all()]}
