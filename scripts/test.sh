#!/usr/bin/env bash
# `make test`: the whole suite on PostgreSQL, Redis and real Celery worker processes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
scripts/browser.sh
scripts/nginx.sh
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi
exit "$status"
