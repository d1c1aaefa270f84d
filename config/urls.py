from django.contrib import admin
from django.shortcuts import redirect
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.urls import auth_urlpatterns

api_v1 = [
    path("", include("models.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("", lambda request: redirect("registry:family-list"), name="home"),
    path("", include(auth_urlpatterns)),
    path("accounts/", include("accounts.urls")),
    path("", include("models.urls")),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]
