"""The bearer token in the OpenAPI schema (drf-spectacular), so clients and schema-driven tools
(schemathesis) know how to authenticate."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A Stagegate API token (`sg_...`) from your profile page or "
                               "`manage.py create_token`."}
