from django.urls import path

from publishing import views

app_name = "publishing"

urlpatterns = [
    path("families/<str:org>/<str:name>/targets/", views.family_targets, name="family-targets"),
    path("releases/<int:release_id>/targets/<int:target_id>/sync/", views.sync_now,
         name="sync-now"),
]
