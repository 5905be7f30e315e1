#!/usr/bin/env bash
# `make test`: installs and starts what the tests need, checks the contracts, lints, runs all tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ "$(id -u)" = 0 ] || die "the tests start Docker and PostgreSQL: run them as root"
mkdir -p "$STATE/logs"
t0=$(date +%s)

apt_install docker.io mmdebstrap postgresql-15 ca-certificates openssh-client redis-server
ensure_venv "[dev]"
ensure_docker
ensure_image
ensure_client_venv
if [ ! -x .tools/node_modules/.bin/buf ] || [ ! -x .tools/node_modules/.bin/azurite ]; then
  say "installing buf and azurite (npm)"
  npm install --silent --prefix .tools @bufbuild/buf@1.75.0 azurite@3 >/dev/null
fi
BUF=.tools/node_modules/.bin/buf

say "contracts: buf lint, buf breaking, generated code fresh"
"$BUF" lint
if git rev-parse --verify -q main >/dev/null; then
  "$BUF" breaking --against '.git#branch=main'
fi
"$VENV/bin/python" proto/generate.py --check

say "lint: ruff, mypy"
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"

say "tests (setup took $(( $(date +%s) - t0 ))s)"
"$VENV/bin/pytest" -q -p no:cacheprovider "$@"
say "all green in $(( $(date +%s) - t0 ))s"
