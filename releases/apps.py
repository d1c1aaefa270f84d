from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    verbose_name = "Releases"

    def ready(self) -> None:
        from evaluations import services as eval_services
        from evaluations.signals import eval_run_finished
        from models import scanning
        from models.panels import Panel, register_panel
        from models.signals import checkpoint_ready
        from releases import hooks

        eval_services.set_required_evals_provider(hooks.required_evals_for_checkpoint)
        eval_services.set_parent_resolver(hooks.previous_released_checkpoint)
        scanning.set_auto_conversion_provider(hooks.converts_pickles_automatically)
        checkpoint_ready.connect(hooks.queue_required_evals, dispatch_uid="releases-ready")
        eval_run_finished.connect(hooks.refresh_waiting_releases, dispatch_uid="releases-evals")
        register_panel(Panel(key="releases", title="Releases",
                             url_name="releases:checkpoint-panel", order=10))
