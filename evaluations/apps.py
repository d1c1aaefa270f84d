from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "evaluations"
    verbose_name = "Safety evaluations"

    def ready(self) -> None:
        from models.panels import Panel, register_panel

        register_panel(Panel(key="evals", title="Evaluations",
                             url_name="evaluations:checkpoint-panel", order=20))
