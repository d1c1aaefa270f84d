from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from models import api

router = SimpleRouter()
router.register("families", api.FamilyViewSet, basename="family")
router.register("checkpoints", api.CheckpointViewSet, basename="checkpoint")

urlpatterns = router.urls + [
    path("uploads/", api.UploadSessionCreateView.as_view(), name="upload-create"),
    path("uploads/<int:session_id>/", api.UploadSessionView.as_view(), name="upload-detail"),
    path("uploads/<int:session_id>/commit/", api.UploadCommitView.as_view(), name="upload-commit"),
    re_path(r"^uploads/(?P<session_id>\d+)/files/(?P<path>.+)$", api.UploadFileView.as_view(),
            name="upload-file"),
]
