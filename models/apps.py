from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "models"
    label = "registry"
    verbose_name = "Checkpoint registry"
