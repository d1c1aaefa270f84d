from django.urls import path

from models import views

app_name = "registry"

urlpatterns = [
    path("families/", views.family_list, name="family-list"),
    path("families/<str:org>/<str:name>/", views.family_detail, name="family-detail"),
    path("checkpoints/<int:checkpoint_id>/", views.checkpoint_detail, name="checkpoint-detail"),
    path("checkpoints/<int:checkpoint_id>/accept-risk/", views.checkpoint_accept_risk,
         name="checkpoint-accept-risk"),
    path("checkpoints/<int:checkpoint_id>/convert/", views.checkpoint_convert,
         name="checkpoint-convert"),
    path("submit/", views.checkpoint_submit, name="checkpoint-submit"),
]
