from django.urls import path
from rest_framework.routers import SimpleRouter

from releases import access_api, api

router = SimpleRouter()
router.register("releases", api.ReleaseViewSet, basename="release")

urlpatterns = router.urls + [
    path("releases/<int:release_id>/access-requests/",
         access_api.ReleaseAccessRequestsView.as_view(), name="release-access-requests"),
    path("releases/<int:release_id>/grants/", access_api.ReleaseGrantsView.as_view(),
         name="release-grants"),
    path("access-requests/", access_api.AccessRequestListView.as_view(), name="access-requests"),
    path("access-requests/bulk/", access_api.AccessRequestBulkView.as_view(),
         name="access-requests-bulk"),
    path("access-requests/<int:request_id>/approve/",
         access_api.AccessRequestDecisionView.as_view(), name="access-request-approve"),
    path("access-requests/<int:request_id>/reject/",
         access_api.AccessRequestRejectView.as_view(), name="access-request-reject"),
    path("grants/<int:grant_id>/revoke/", access_api.GrantRevokeView.as_view(),
         name="grant-revoke"),
]
