#!/usr/bin/env bash
# The download tests and benchmark run their own nginx (Debian's package, never a build from
# source): install it when missing. The package's postinst would start the system service on
# port 80; the tests need only the binary, so a policy-rc.d that forbids starting services is put
# in place for the install when the machine has none (invoke-rc.d's documented switch).
set -euo pipefail
NGINX=/usr/sbin/nginx
POLICY=/usr/sbin/policy-rc.d
if [ ! -x "$NGINX" ]; then
  echo "installing Debian's nginx for the download tests…"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  temporary_policy=""
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    temporary_policy=1
  fi
  cleanup() { if [ -n "$temporary_policy" ]; then $SUDO rm -f "$POLICY"; fi; }
  trap cleanup EXIT
  install_nginx() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null
  }
  (install_nginx 2>/dev/null) || ($SUDO apt-get update -q >/dev/null && install_nginx)
fi
[ -x "$NGINX" ] || { echo "could not install nginx: run 'apt-get install nginx'" >&2; exit 1; }
