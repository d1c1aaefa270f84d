from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.urls import auth_urlpatterns
from audit.views import AuditEventListView
from config import health, views
from models.hub_urls import hub_write_urls
from releases.hub import hub_urls
from signing.views import signing_urls

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
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("favicon.ico", views.favicon),
    *signing_urls(),
    path("accounts/login/", views.login_elsewhere),
    path("", include(auth_urlpatterns)),
    path("accounts/", include("accounts.urls")),
    path("", include("models.urls")),
    path("", include("evaluations.urls")),
    path("", include("releases.urls")),
    path("", include("audit.urls")),
    path("", include("publishing.urls")),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    # The Hub API (huggingface_hub / transformers) last: its repo paths are the most general.
    *hub_write_urls(),
    *hub_urls(),
]
