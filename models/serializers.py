from __future__ import annotations

from rest_framework import serializers

from models.models import Checkpoint, CheckpointFile, ModelFamily


class CheckpointFileSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob_id")

    class Meta:
        model = CheckpointFile
        fields = ["path", "size", "sha256", "kind"]


class CheckpointSummarySerializer(serializers.ModelSerializer):
    family = serializers.CharField(source="family.repo_id")
    parameters = serializers.IntegerField()
    submitted_by = serializers.CharField(source="submitted_by.username", default=None)
    url = serializers.CharField(source="get_absolute_url")

    class Meta:
        model = Checkpoint
        fields = ["id", "family", "label", "manifest_digest", "commit", "status", "parameters",
                  "submitted_by", "created_at", "url"]


class CheckpointSerializer(CheckpointSummarySerializer):
    files = CheckpointFileSerializer(many=True)
    census = serializers.JSONField()
    scan = serializers.SerializerMethodField()
    converted_from = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta(CheckpointSummarySerializer.Meta):
        fields = CheckpointSummarySerializer.Meta.fields + ["census", "files", "scan",
                                                            "converted_from"]

    def get_scan(self, checkpoint) -> list[dict]:
        from models.scanning import scan_reports

        reports = scan_reports(checkpoint)
        rows = []
        for f in checkpoint.files.all():
            if not f.needs_scan:
                continue
            report = reports.get(f.path)
            rows.append({
                "path": f.path, "sha256": f.blob_id,
                "verdict": report.verdict if report else "pending",
                "format": report.format if report else None,
                "findings": report.findings if report else [],
                "globals": report.globals if report else [],
                "risk_accepted_by": f.risk_accepted_by.username if f.risk_accepted_by else None,
                "risk_accepted_at": f.risk_accepted_at,
                "risk_justification": f.risk_justification or None,
            })
        return rows


class AcceptRiskSerializer(serializers.Serializer):
    path = serializers.CharField()
    justification = serializers.CharField()


class FamilySerializer(serializers.ModelSerializer):
    repo_id = serializers.CharField()
    checkpoint_count = serializers.IntegerField(required=False)
    url = serializers.CharField(source="get_absolute_url")

    class Meta:
        model = ModelFamily
        fields = ["repo_id", "org", "name", "description", "checkpoint_count", "created_at", "url"]


class UploadSessionCreateSerializer(serializers.Serializer):
    family = serializers.CharField(help_text="org/name")
    label = serializers.CharField()


class CheckpointSubmitSerializer(serializers.Serializer):
    """Documentation of the multipart form; parsing is done by HashingUploadHandler."""

    family = serializers.CharField(help_text="org/name, created on first submission")
    label = serializers.CharField(help_text="unique within the family, e.g. step143000")
    files = serializers.ListField(
        child=serializers.FileField(),
        help_text="One part per file. A part named `path:<relative/path>` keeps its folder; "
                  "any other part name uses the part's file name.")
