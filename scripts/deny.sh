#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences, banned crates, sources, and the
# RustSec advisories. cargo-deny is installed from crates.io (pinned) when missing. The
# advisory database comes from GitHub: when it cannot be fetched (offline machines), that one
# check is reported loudly as NOT run, never passed silently; the other three still gate.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $VERSION" ]; then
  echo "deny: installing cargo-deny $VERSION from crates.io" >&2
  cargo install --locked --quiet cargo-deny --version "$VERSION"
fi
cargo deny check licenses bans sources
if timeout 30 git ls-remote --exit-code https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "!!!!!!!! deny: RustSec advisories NOT checked: github.com (the advisory database) is unreachable from this machine !!!!!!!!" >&2
fi
