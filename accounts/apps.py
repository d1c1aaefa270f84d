from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self):
        from accounts import schema, throttle  # noqa: F401 (schema registers an extension)

        throttle.connect()
