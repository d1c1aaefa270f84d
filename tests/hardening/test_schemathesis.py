"""schemathesis against /api/v1/schema/ on a live server: requests generated from the OpenAPI
schema (valid and deliberately invalid ones) never get a 5xx, and every response conforms to
the schema (status, content type, body)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


@override_settings(AXES_FAILURE_LIMIT=10**6)
def test_schemathesis_finds_no_5xx_and_no_response_off_schema(hub_world, stagegate_server,
                                                              tmp_path):
    _, _, tokens = hub_world
    command = [str(SCHEMATHESIS), "run", f"{stagegate_server.url}/api/v1/schema/",
               "--checks", CHECKS, "--header", f"Authorization: Bearer {tokens['dave']}",
               "--max-examples", os.environ.get("STAGEGATE_SCHEMATHESIS_EXAMPLES", "25"),
               "--phases", "examples,coverage,fuzzing", "--seed", "11",
               "--generation-deterministic",
               "--workers", "1", "--request-timeout", "60",
               # No --max-time: with one, fuzzing repeats until the time is spent; without,
               # each phase runs once, to the end (25 fuzzed cases per operation: about a minute).
               "--no-color", "--warnings", "off",
               # A free-form string path parameter (a family's org/name) has no invalid values
               # for the negative mode to generate; schemathesis reports that as filtering.
               "--suppress-health-check", "filter_too_much",
               "--report", "junit", "--report-dir", str(tmp_path)]
    # Run in the test's own folder: schemathesis keeps a cache in its working directory.
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-3000:]
    assert "passed" in proc.stdout.lower()
