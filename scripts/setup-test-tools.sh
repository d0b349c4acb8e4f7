#!/usr/bin/env bash
# Tools the test suite uses beside cargo, from Debian packages: Prometheus (promtool and the
# server) and a headless browser for the UI tests (chromium with chromium-driver, the WebDriver
# server; tests/ui.rs drives them). Installed only when missing; a no-op afterwards.
set -euo pipefail
missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-test-tools: missing ${missing[*]} and apt-get unavailable; install them" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "setup-test-tools: installing Debian's ${missing[*]}" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The prometheus package starts a system service on :9090 where systemd runs; tests start their own.
