from django.urls import path

from evaluations import views

app_name = "evaluations"

urlpatterns = [
    path("checkpoints/<int:checkpoint_id>/evals/", views.checkpoint_panel, name="checkpoint-panel"),
    path("checkpoints/<int:checkpoint_id>/evals/request/", views.checkpoint_evaluate,
         name="checkpoint-evaluate"),
    path("evals/runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("evals/runs/<int:run_id>/retry/", views.run_retry, name="run-retry"),
    path("evals/runs/<int:run_id>/samples.jsonl", views.run_samples, name="run-samples"),
    path("evals/runs/<int:run_id>/results.json", views.run_result, name="run-result"),
    path("evals/runs/<int:run_id>/artifacts/<str:name>", views.run_artifact, name="run-artifact"),
    path("evals/packs/", views.pack_list, name="pack-list"),
    path("families/<str:org>/<str:name>/canaries/", views.family_canaries,
         name="family-canaries"),
    path("families/<str:org>/<str:name>/plots/<str:eval_name>/<str:metric>.png", views.family_plot,
         name="family-plot"),
]
