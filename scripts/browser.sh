#!/usr/bin/env bash
# Browser tests drive Debian's chromium (never `playwright install`): install it when missing.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the browser tests…"
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q chromium >/dev/null 2>&1) || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)
  else
    sudo apt-get install -y -q chromium >/dev/null
  fi
fi
[ -x /usr/bin/chromium ] || { echo "could not install chromium: run 'apt-get install chromium'" >&2; exit 1; }
# axe-core (the accessibility checks the browser tests inject), pinned in tests/browser_assets.
if [ ! -f tests/browser_assets/node_modules/axe-core/axe.min.js ]; then
  echo "installing axe-core for the browser tests…"
  (cd tests/browser_assets && npm ci --no-audit --no-fund --silent)
fi
[ -f tests/browser_assets/node_modules/axe-core/axe.min.js ] || { echo "could not install axe-core: run 'npm ci' in tests/browser_assets" >&2; exit 1; }
