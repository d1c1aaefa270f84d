"""What the development debug page may show: never a secret.

Django's default filter hides settings and request.META keys whose names look like
API|TOKEN|KEY|SECRET|PASS|SIGNATURE; it shows DATABASE_URL, broker URLs and S3 settings, which
carry passwords and keys of their own, and it shows every local variable of every frame (a
database driver's frame holds the connection string, password included). Under runserver,
request.META holds the whole process environment. So this filter hides by name (settings,
META keys and frame variables alike) and also replaces any value that contains one of the
instance's secrets, wherever it appears.
"""

from __future__ import annotations

import re
from functools import cached_property
from urllib.parse import urlparse

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter


class SecretsFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|COOKIE|CREDENTIAL|SESSION|CSRF|DSN|URL|"
        r"DATABASE|BROKER|REDIS|AWS|S3|EMAIL_HOST|PRIVATE|CONNINFO|CONN_PARAMS",
        flags=re.IGNORECASE)

    @cached_property
    def secret_values(self) -> list[str]:
        values = [settings.SECRET_KEY, getattr(settings, "EMAIL_HOST_PASSWORD", "")]
        for database in settings.DATABASES.values():
            values.append(database.get("PASSWORD") or "")
        blobs = settings.STORAGES.get("blobs", {}).get("OPTIONS", {})
        values += [blobs.get("secret_key") or "", blobs.get("access_key") or ""]
        for url in (getattr(settings, "DATABASE_URL", None), settings.CELERY_BROKER_URL):
            if url:
                values.append(urlparse(url).password or "")
        return [v for v in values if v and len(v) >= 4]

    def _redact(self, value):
        try:
            text = repr(value)
        except Exception:  # an object whose repr fails is not shown at all
            return self.cleansed_substitute
        if any(secret in text for secret in self.secret_values):
            return self.cleansed_substitute
        return value

    def cleanse_setting(self, key, value):
        return self._redact(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(self, request, tb_frame):
        return [(name, self.cleansed_substitute if self.hidden_settings.search(name)
                 else self._redact(value))
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]
