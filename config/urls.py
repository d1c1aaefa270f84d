from django.contrib import admin
from django.shortcuts import redirect
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.roles import is_lab_member
from accounts.urls import auth_urlpatterns
from audit.views import AuditEventListView
from models.hub_urls import hub_write_urls
from releases.hub import hub_urls

api_v1 = [
    path("", include("evaluations.api_urls")),
    path("", include("releases.api_urls")),
    path("", include("models.api_urls")),
    path("audit/", AuditEventListView.as_view(), name="audit-list"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    # The lab starts at its registry; everyone else at the catalogue of what they may see.
    path("", lambda request: redirect("registry:family-list" if is_lab_member(request.user)
                                      else "releases:catalogue"), name="home"),
    path("", include(auth_urlpatterns)),
    path("accounts/", include("accounts.urls")),
    path("", include("models.urls")),
    path("", include("evaluations.urls")),
    path("", include("releases.urls")),
    path("", include("audit.urls")),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    # The Hub API (huggingface_hub / transformers) last: its repo paths are the most general.
    *hub_write_urls(),
    *hub_urls(),
]
