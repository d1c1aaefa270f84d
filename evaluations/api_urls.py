from django.urls import path

from evaluations import api

urlpatterns = [
    path("evals/", api.EvalCatalogueView.as_view(), name="eval-catalogue"),
    path("evals/runs/", api.EvalRunListView.as_view(), name="eval-run-list"),
    path("evals/runs/<int:run_id>/", api.EvalRunDetailView.as_view(), name="eval-run-detail"),
    path("evals/runs/<int:run_id>/retry/", api.EvalRunRetryView.as_view(), name="eval-run-retry"),
    path("evals/runs/<int:run_id>/samples/", api.EvalRunSamplesView.as_view(),
         name="eval-run-samples"),
    path("evals/packs/", api.EvalPackUploadView.as_view(), name="eval-pack-upload"),
    path("evals/tasks/", api.EvalTaskUploadView.as_view(), name="eval-task-upload"),
    path("checkpoints/<int:checkpoint_id>/evaluate/", api.CheckpointEvaluateView.as_view(),
         name="checkpoint-evaluate"),
    path("families/<str:org>/<str:name>/canaries/", api.FamilyCanaryView.as_view(),
         name="family-canaries"),
]
