#!/usr/bin/env bash
# Installs the system packages geoloc needs and builds pgvector 0.8 from Debian's source package.
# Idempotent: a second run on a ready machine only checks and exits in about a second.
# Bookworm ships PostgreSQL 15 and PostGIS 3.3 but no pgvector, so pgvector is built from trixie's
# source package against postgresql-server-dev-15 (trixie's binaries would need a newer libc).
set -euo pipefail

PG_MAJOR=${GEOLOC_PG_MAJOR:-15}
PGVECTOR_VERSION=${GEOLOC_PGVECTOR_VERSION:-0.8.0}
WITH_BROWSER=${GEOLOC_WITH_BROWSER:-1}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

log() { printf 'install-system: %s\n' "$*" >&2; }

packages=(postgresql-$PG_MAJOR postgresql-$PG_MAJOR-postgis-3 postgresql-server-dev-$PG_MAJOR
          postgresql-client-$PG_MAJOR build-essential dpkg-dev)
if [ "$WITH_BROWSER" = 1 ]; then packages+=(chromium chromium-driver); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

pgbin=/usr/lib/postgresql/$PG_MAJOR/bin
have_vector() {
  local sharedir
  sharedir=$("$pgbin/pg_config" --sharedir 2>/dev/null) || return 1
  [ -f "$sharedir/extension/vector--$PGVECTOR_VERSION.sql" ] || [ -f "$sharedir/extension/vector.control" ] &&
    grep -q "default_version = '$PGVECTOR_VERSION'" "$sharedir/extension/vector.control" 2>/dev/null
}

if [ ${#missing[@]} -eq 0 ] && have_vector; then
  log "system packages and pgvector $PGVECTOR_VERSION already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postgresql package creates and starts a system cluster; geoloc runs its own, so leave
# the system one alone (it uses port 5432; geoloc's default port differs).

if ! have_vector; then
  log "building pgvector $PGVECTOR_VERSION from Debian's source package"
  src_list=/etc/apt/sources.list.d/geoloc-trixie-src.list
  if [ ! -f "$src_list" ]; then
    echo "deb-src http://deb.debian.org/debian trixie main" | $SUDO tee "$src_list" >/dev/null
    $SUDO apt-get update -qq
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get source -qq --download-only "pgvector=$PGVECTOR_VERSION-*" >/dev/null 2>&1 ||
                 apt-get source -qq --download-only pgvector >/dev/null)
  (cd "$work" && dpkg-source -x --no-check ./*.dsc src >/dev/null)
  make -s -C "$work/src" PG_CONFIG="$pgbin/pg_config" OPTFLAGS="" >/dev/null
  $SUDO make -s -C "$work/src" PG_CONFIG="$pgbin/pg_config" install >/dev/null
  have_vector || { log "pgvector build finished but vector $PGVECTOR_VERSION is not installed"; exit 1; }
fi
log "ready: PostgreSQL $PG_MAJOR, PostGIS, pgvector $PGVECTOR_VERSION"
