#!/usr/bin/env bash
# `make run`: migrate, seed the demo, serve the web UI and a Celery worker; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${STAGEGATE_HOST:-127.0.0.1}
PORT=${STAGEGATE_PORT:-8000}
# Links in mail and the download instructions point at this server.
export STAGEGATE_SITE_URL=${STAGEGATE_SITE_URL:-http://$HOST:$PORT}

$PY manage.py migrate --noinput -v0
$PY manage.py seed_demo

.venv/bin/celery -A config worker -B -s "${STAGEGATE_DATA_DIR:-var}/celerybeat-schedule" -Q default,evals,gpu --concurrency 2 -l warning &
worker=$!
$PY manage.py runserver --noreload "$HOST:$PORT" &
web=$!

stop() {
  trap - EXIT
  echo; echo "stopping Stagegate…"
  kill -TERM "$web" "$worker" 2>/dev/null || true
  wait "$web" "$worker" 2>/dev/null || true
}
# Ctrl-C is the normal way out (exit 0); a process that dies on its own passes on its status.
# Ctrl-C reaches the server and the worker too, so either may end first: the flag says which.
interrupted=0
trap 'interrupted=1' INT TERM
trap stop EXIT

echo
echo "Stagegate is running at http://$HOST:$PORT/  (API docs: http://$HOST:$PORT/api/v1/docs/)"
echo "Sign in with one of the demo logins above. Ctrl-C stops the web server and the worker."
status=0
wait -n "$web" "$worker" || status=$?
stop
if [ "$interrupted" = 1 ]; then exit 0; fi
exit "$status"
