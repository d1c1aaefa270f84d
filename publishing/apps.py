from django.apps import AppConfig


class PublishingConfig(AppConfig):
    name = "publishing"
    verbose_name = "Publishing to Hugging Face Hubs"

    def ready(self) -> None:
        from publishing import hooks
        from releases import signals

        signals.stage_published.connect(hooks.stage_published, dispatch_uid="publishing-published")
        signals.release_withdrawn.connect(hooks.release_withdrawn,
                                          dispatch_uid="publishing-withdrawn")
        signals.access_changed.connect(hooks.access_changed, dispatch_uid="publishing-access")
