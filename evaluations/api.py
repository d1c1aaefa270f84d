"""REST API of evaluations: /api/v1/evals/..., and /api/v1/checkpoints/{id}/evaluate/."""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FileUploadParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import StrictJSONParser
from config.untrusted import query_int
from evaluations import catalogue, services
from evaluations.library.harness import MAX_BUNDLE_BYTES
from evaluations.library.registry import all_evals
from evaluations.models import EvalPack, EvalRun, HarnessTask
from evaluations.views import visible_run
from models import blobstore
from models.selectors import checkpoints_visible_to, get_checkpoint, get_family


class EvalRefused(APIException):
    def __init__(self, message: str, status_code: int = 400):
        self.status_code = status_code
        super().__init__(detail=message)


class EvalRunSerializer(serializers.ModelSerializer):
    checkpoint = serializers.IntegerField(source="checkpoint_id")
    progress = serializers.SerializerMethodField()
    url = serializers.CharField(source="get_absolute_url")

    class Meta:
        model = EvalRun
        fields = ["id", "checkpoint", "manifest_digest", "eval_name", "eval_version", "code_hash",
                  "params", "cache_key", "status", "progress", "attempt", "error", "metrics",
                  "result", "samples_id", "artifacts", "device", "dtype", "created_at",
                  "started_at", "finished_at", "url"]

    def get_progress(self, run) -> dict:
        return {"done": run.progress_done, "total": run.progress_total,
                "percent": run.progress_percent}


class EvaluateSerializer(serializers.Serializer):
    evals = serializers.ListField(child=serializers.CharField(), required=False,
                                  help_text="eval or pack names; empty: the policy's required evals")
    params = serializers.DictField(required=False, help_text="{eval: {param: value}}")


class CanarySerializer(serializers.Serializer):
    template = serializers.CharField(help_text='with one {} where the secret goes')
    alphabet = serializers.CharField()
    length = serializers.IntegerField(min_value=1)
    secret = serializers.CharField(write_only=True)


class EvalCatalogueView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        """Every eval that can run: the built-ins, one per uploaded pack, and each version of
        each registered lm-eval or Inspect task (`kind`: lm_eval, inspect)."""
        builtins = [{"name": s.name, "version": s.version, "description": s.description,
                     "metrics": list(s.metrics), "higher_is_better": dict(s.higher_is_better),
                     "params": dict(s.params), "needs_model": s.needs_model,
                     "needs_gpu": s.needs_gpu, "prefers_gpu": s.prefers_gpu,
                     "kind": "builtin"} for s in all_evals().values()]
        packs = [{"name": p.name, "version": p.version, "type": p.type, "sha256": p.sha256,
                  "runs_as": catalogue.EVAL_FOR_PACK_TYPE.get(p.type), "items": p.items,
                  "kind": "pack"} for p in EvalPack.objects.all()]
        tasks = [{"name": t.name, "version": t.version, "sha256": t.sha256,
                  "metrics": sorted(t.metrics), "higher_is_better": dict(t.metrics),
                  "files": sorted(t.files), "kind": t.kind}
                 for t in HarnessTask.objects.order_by("name", "created_at", "id")]
        return Response({"evals": builtins + packs + tasks})


class EvalRunListView(APIView):
    @extend_schema(operation_id="evals_runs_list", responses={200: EvalRunSerializer(many=True)},
                   parameters=[OpenApiParameter("checkpoint", int, description="only the runs "
                                                "of this checkpoint")])
    def get(self, request):
        """Runs of the checkpoints you can see; filter with ?checkpoint=ID."""
        runs = EvalRun.objects.filter(
            checkpoint__in=checkpoints_visible_to(request.user)).order_by("-created_at")
        checkpoint_id = query_int(request.query_params, "checkpoint")
        if checkpoint_id is not None:
            runs = runs.filter(checkpoint_id=checkpoint_id)
        return Response(EvalRunSerializer(runs[:500], many=True).data)


class EvalRunDetailView(APIView):
    @extend_schema(responses=EvalRunSerializer)
    def get(self, request, run_id: int):
        return Response(EvalRunSerializer(visible_run(request.user, run_id)).data)


class EvalRunRetryView(APIView):
    @extend_schema(request=None, responses={202: EvalRunSerializer})
    def post(self, request, run_id: int):
        """Ask again for a run that failed or errored (nothing re-queues one automatically)."""
        run = visible_run(request.user, run_id)
        try:
            run = services.retry_eval_run(actor=request.user, run=run)
        except services.EvalRequestError as exc:
            raise EvalRefused(exc.message, exc.status) from None
        return Response(EvalRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class EvalRunSamplesView(APIView):
    @extend_schema(responses={(200, "application/jsonl"): OpenApiTypes.BINARY})
    def get(self, request, run_id: int):
        """The run's per-sample rows as JSON Lines."""
        run = visible_run(request.user, run_id)
        if not run.samples_id:
            raise Http404("this run stored no samples")
        return FileResponse(blobstore.open_blob(run.samples_id), content_type="application/jsonl",
                            as_attachment=True, filename=f"{run.eval_name}-{run.pk}-samples.jsonl")


class CheckpointEvaluateView(APIView):
    parser_classes = [StrictJSONParser]

    @extend_schema(request=EvaluateSerializer, responses={202: EvalRunSerializer(many=True)})
    def post(self, request, checkpoint_id: int):
        """Queue evals of a checkpoint; a request for a run that exists returns that run."""
        checkpoint = get_checkpoint(request.user, checkpoint_id)
        data = EvaluateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            runs = services.request_evals(actor=request.user, checkpoint=checkpoint,
                                          eval_names=data.validated_data.get("evals") or None,
                                          params=data.validated_data.get("params"))
        except services.EvalRequestError as exc:
            raise EvalRefused(exc.message, exc.status) from None
        return Response(EvalRunSerializer(runs, many=True).data, status=status.HTTP_202_ACCEPTED)


class EvalPackUploadView(APIView):
    parser_classes = [MultiPartParser, FileUploadParser]

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}}, responses={201: OpenApiTypes.OBJECT})
    def post(self, request, filename: str | None = None):
        """Upload a pack (multipart field `file`); errors name the line."""
        upload = request.data.get("file")
        if upload is None:
            raise EvalRefused("send the pack as multipart field `file`")
        try:
            pack = services.add_eval_pack(actor=request.user, data=upload.read())
        except services.EvalRequestError as exc:
            raise EvalRefused(exc.message, exc.status) from None
        return Response({"name": pack.name, "version": pack.version, "type": pack.type,
                         "sha256": pack.sha256, "items": pack.items,
                         "runs_as": catalogue.EVAL_FOR_PACK_TYPE[pack.type]},
                        status=status.HTTP_201_CREATED)


class EvalTaskUploadView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "task": {"type": "string", "format": "binary",
                 "description": "the lm-eval YAML task, or the Inspect task's Python file"},
        "kind": {"type": "string", "enum": ["lm_eval", "inspect"]},
        "metric": {"type": "array", "items": {"type": "string"},
                   "description": "inspect: NAME=higher or NAME=lower, one per metric"}},
        "additionalProperties": {"type": "string", "format": "binary",
                                 "description": "each data file, under its path relative to "
                                                "the task's folder (e.g. data/test.jsonl)"}}},
        responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        """Register an lm-evaluation-harness task (its YAML, `dataset_path: json`) or an Inspect
        task with its data files; it becomes an eval under the task's name. Send the task as
        multipart field `task` and each data file as a part named by its path relative to the
        task's folder: `curl -F task=@task.yaml -F data/test.jsonl=@data/test.jsonl`."""
        task = request.FILES.get("task")
        if task is None:
            raise EvalRefused("send the task's file as multipart field `task`, and each data "
                              "file as a part named by its path (e.g. data/test.jsonl)")
        kind = request.data.get("kind", "lm_eval")
        metrics = {}
        for item in request.data.getlist("metric") if hasattr(request.data, "getlist") else []:
            name, _, better = str(item).partition("=")
            if better not in ("higher", "lower") or not name:
                raise EvalRefused(f"metric {item!r}: write NAME=higher or NAME=lower")
            metrics[name] = better == "higher"
        total = sum(upload.size for field in request.FILES
                    for upload in request.FILES.getlist(field))
        if total > MAX_BUNDLE_BYTES:
            raise EvalRefused(f"the task and its files are {total} bytes; the limit is "
                              f"{MAX_BUNDLE_BYTES}", 413)
        files = {}
        for field in request.FILES:
            if field == "task":
                continue
            uploads = request.FILES.getlist(field)
            if len(uploads) != 1:
                raise EvalRefused(f"{field}: send each data file once")
            files[field] = uploads[0].read()
        try:
            row = services.add_harness_task(actor=request.user, config=task.read(), files=files,
                                            kind=str(kind), metrics=metrics)
        except services.EvalRequestError as exc:
            raise EvalRefused(exc.message, exc.status) from None
        return Response({"name": row.name, "kind": row.kind, "version": row.version,
                         "sha256": row.sha256, "files": sorted(row.files),
                         "metrics": row.metrics}, status=status.HTTP_201_CREATED)


class FamilyCanaryView(APIView):
    parser_classes = [StrictJSONParser]

    @extend_schema(request=CanarySerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request, org: str, name: str):
        """Register a canary for a family; the secret is never returned."""
        family = get_family(request.user, org, name)
        data = CanarySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            canary = services.add_canary(actor=request.user, family=family, **data.validated_data)
        except services.EvalRequestError as exc:
            raise EvalRefused(exc.message, exc.status) from None
        return Response({"id": canary.label, "template": canary.template,
                         "alphabet": canary.alphabet, "length": canary.length},
                        status=status.HTTP_201_CREATED)


