from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    verbose_name = "Releases"

    def ready(self) -> None:
        from evaluations import services as eval_services
        from evaluations.signals import eval_run_finished, family_inputs_changed
        from models.panels import Panel, register_panel
        from models.signals import checkpoint_ready
        from releases import hooks

        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_save

        eval_services.set_required_evals_provider(hooks.required_evals_for_checkpoint)
        eval_services.set_evidence_provider(hooks.current_evidence)
        eval_services.set_parent_resolver(hooks.previous_released_checkpoint)
        user_model = get_user_model()
        m2m_changed.connect(hooks.recheck_reviewers_approvals, sender=user_model.groups.through,
                            dispatch_uid="releases-roles")
        post_save.connect(hooks.recheck_deactivated_reviewer, sender=user_model,
                          dispatch_uid="releases-deactivated")
        checkpoint_ready.connect(hooks.queue_required_evals, dispatch_uid="releases-ready")
        checkpoint_ready.connect(hooks.convert_pickles_by_policy, dispatch_uid="releases-convert")
        eval_run_finished.connect(hooks.refresh_waiting_releases, dispatch_uid="releases-evals")
        family_inputs_changed.connect(hooks.request_new_family_evidence,
                                      dispatch_uid="releases-family-inputs")
        register_panel(Panel(key="releases", title="Releases",
                             url_name="releases:checkpoint-panel", order=10))
