#!/usr/bin/env bash
# Shared helpers for the hack/ scripts. Source it; do not run it.
# shellcheck disable=SC2034

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DMS_VENV:-$ROOT/.venv}"
BUILD="$ROOT/.build"
COLLECTIONS="$BUILD/collections"
STAGE="$COLLECTIONS/ansible_collections/dms/mailserver"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# ensure_venv REQUIREMENTS_FILE: create $VENV and install the pinned requirements when they changed.
ensure_venv() {
  local req="$1" stamp want
  command -v python3 >/dev/null || die "python3 is needed (3.11 or newer)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  stamp="$VENV/.dms-requirements-$(basename "$req")"
  want="$(cat "$ROOT"/requirements/*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing $(basename "$req") into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" || die "pip install failed"
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# ensure_debs PACKAGE...: install Debian packages that are missing (needs root and apt-get).
ensure_debs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or apt-get install them)"
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# stage: copy the working tree to .build/collections/ansible_collections/dms/mailserver,
# where ansible and ansible-test find it by its name.
# A mirror in Python (hack/stage.py), so that no Debian package is needed for it (the demo's config-only mode
# runs as any user).
stage() {
  mkdir -p "$STAGE"
  python3 "$ROOT/hack/stage.py" "$ROOT" "$STAGE" || die "staging the collection into $STAGE failed"
  # ansible-test lists a collection's files with git when the collection sits inside a git work tree. The
  # stage lies in this repository's ignored .build/, so without an index of its own every sanity test would
  # be skipped ("All targets skipped") and pass without testing anything.
  if command -v git >/dev/null; then
    [ -d "$STAGE/.git" ] || git -C "$STAGE" init -q
    git -C "$STAGE" add -A
  fi
  export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS"
}
