# Shared helpers for bai's scripts (sourced, not run).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${BAI_STATE_DIR:-$ROOT/.bai}"
VENV="$ROOT/.venv"
CLIENT_VENV="$ROOT/.venv-client"
PY313="${BAI_PY313:-$HOME/.pyenv/versions/3.13.0/bin/python3}"
export DEBIAN_FRONTEND=noninteractive

say() { printf '\033[1m[bai]\033[0m %s\n' "$*" >&2; }
die() { printf '[bai] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  # Installs Debian packages that are missing; apt-get update only when needed.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} (apt)"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  say "starting the Docker engine (dockerd, in the background)"
  mkdir -p "$STATE/logs"
  nohup dockerd >"$STATE/logs/dockerd.log" 2>&1 &
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "dockerd did not start; see $STATE/logs/dockerd.log"
}

ensure_venv() {
  local extras="${1:-}"
  mkdir -p "$STATE/logs"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  fi
  local stamp="$VENV/.bai-installed$extras"
  # deploy/constraints.txt pins the tested versions: resolution is instant and reproducible
  # (unpinned, pip backtracks through botocore releases for minutes). Refresh it with
  # `.venv/bin/pip freeze --exclude-editable > deploy/constraints.txt` after changing dependencies.
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/deploy/constraints.txt" -nt "$stamp" ]; then
    say "installing bai into $VENV ${extras:+(with $extras)}"
    "$VENV/bin/pip" install -q -c "$ROOT/deploy/constraints.txt" -e "$ROOT$extras" >/dev/null 2>"$STATE/logs/pip.log" \
      || { cat "$STATE/logs/pip.log" >&2; die "pip install failed"; }
    touch "$stamp"
  fi
}

ensure_client_venv() {
  # The official Backend.AI client needs Python 3.13.
  mkdir -p "$STATE/logs"
  if [ -x "$CLIENT_VENV/bin/backend.ai" ]; then return 0; fi
  [ -x "$PY313" ] || die "Python 3.13 not found at $PY313 (set BAI_PY313)"
  say "installing the official client backend.ai-client==26.9.6 into $CLIENT_VENV"
  "$PY313" -m venv "$CLIENT_VENV"
  "$CLIENT_VENV/bin/pip" install -q backend.ai-client==26.9.6 >/dev/null 2>"$STATE/logs/pip-client.log" \
    || { cat "$STATE/logs/pip-client.log" >&2; rm -rf "$CLIENT_VENV"; die "installing the official client failed"; }
}

ensure_image() {
  bash "$ROOT/deploy/images/build.sh"
}
