#!/usr/bin/env bash
# Tools the test suite uses beside cargo: Prometheus (promtool and the server, from Debian's
# `prometheus` package). Installed only when missing; a no-op afterwards.
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-test-tools: promtool/prometheus missing and apt-get unavailable; install Prometheus" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "setup-test-tools: installing Debian's prometheus package (promtool + server)" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service on :9090 where systemd runs; tests start their own.
