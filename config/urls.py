from csp.decorators import csp_update
from django.contrib import admin
from django.shortcuts import redirect
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.roles import is_lab_member
from accounts.urls import auth_urlpatterns
from audit.views import AuditEventListView
from releases.hub import hub_urls

api_v1 = [
    path("", include("evaluations.api_urls")),
    path("", include("releases.api_urls")),
    path("", include("models.api_urls")),
    path("audit/", AuditEventListView.as_view(), name="audit-list"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's script as a file, so the CSP needs no inline script;
    # Swagger UI injects <style> elements, which this one page allows (styles, never scripts).
    path("docs/", csp_update({"style-src": ["'unsafe-inline'"]})(
        SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
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
    *hub_urls(),
]
