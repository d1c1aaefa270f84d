from django.urls import path

from releases import catalogue, views

app_name = "releases"

urlpatterns = [
    path("releases/", views.release_list, name="release-list"),
    path("reviews/", views.review_queue, name="review-queue"),
    path("releases/<int:release_id>/", views.release_detail, name="release-detail"),
    path("releases/<int:release_id>/update/", views.release_update, name="release-update"),
    path("releases/<int:release_id>/submit/", views.release_submit, name="release-submit"),
    path("releases/<int:release_id>/decide/", views.release_decide, name="release-decide"),
    path("releases/<int:release_id>/publish/", views.release_publish, name="release-publish"),
    path("releases/<int:release_id>/next-stage/", views.release_next_stage, name="release-next-stage"),
    path("releases/<int:release_id>/withdraw/", views.release_withdraw, name="release-withdraw"),
    path("releases/<int:release_id>/comment/", views.release_comment, name="release-comment"),
    path("releases/<int:release_id>/reopen/", views.release_reopen, name="release-reopen"),
    path("releases/<int:release_id>/plots/<str:eval_name>/<str:metric>.png", views.release_plot,
         name="release-plot"),
    path("checkpoints/<int:checkpoint_id>/releases/", views.checkpoint_panel,
         name="checkpoint-panel"),
    path("checkpoints/<int:checkpoint_id>/releases/new/", views.release_create,
         name="release-create"),
    path("models/", catalogue.catalogue, name="catalogue"),
    path("models/<str:org>/<str:name>/", catalogue.model_page, name="model-page"),
    path("models/<str:org>/<str:name>/releases/<int:release_id>/request-access/",
         catalogue.request_access_view, name="request-access"),
    path("models/<str:org>/<str:name>/releases/<int:release_id>/card/<path:path>",
         catalogue.card_image, name="card-image"),
    path("access/", catalogue.access_admin, name="access-admin"),
]
