#!/usr/bin/env bash
# The README's first command: the collection's main job (dms.mailserver.site) on this machine, then the DNS
# records to publish and how to log in. Everything it writes goes under demo-output/ in this checkout; a second
# run changes nothing.
#
# Full deployment when a container engine is here: as root, with Docker running or startable
# (hack/ensure-docker.sh starts an installed dockerd) and the test image buildable (hack/build-test-images.sh),
# the mail server runs as the container dms-demo on 127.0.0.1. Otherwise config-only: the DMS config directory
# with accounts, aliases and a DKIM key, and no container.
#
# Environment:
#   DMS_DEMO_MODE   auto (default), full (fail when the container cannot run) or config (never run a container)
#   DMS_DEMO_IMAGE  the image to run (default: the DMS 16 test image dms-test:16, built here)
# Extra arguments go to ansible-playbook (for example -e dms_container_name=other).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"

mode="${DMS_DEMO_MODE:-auto}"
case "$mode" in auto|full|config) ;; *) die "DMS_DEMO_MODE must be auto, full or config (got '$mode')";; esac

# Can a container run here? Never installs an engine: only starts one that is installed.
engine_ready() {
  [ "$(id -u)" -eq 0 ] || { say "not root: config-only"; return 1; }
  if ! command -v docker >/dev/null || ! { docker info >/dev/null 2>&1 || command -v dockerd >/dev/null; }; then
    say "no Docker engine installed: config-only"
    return 1
  fi
  bash "$ROOT/hack/ensure-docker.sh" || { say "Docker did not start: config-only"; return 1; }
  if [ -z "${DMS_DEMO_IMAGE:-}" ] || [ "${DMS_DEMO_IMAGE}" = dms-test:16 ]; then
    say "building the test image if it is missing (about two and a half minutes the first time)"
    bash "$ROOT/hack/build-test-images.sh" 16 \
      || { say "the test image could not be built: config-only"; return 1; }
  fi
}

full=false
if [ "$mode" != config ]; then
  if engine_ready; then
    full=true
  elif [ "$mode" = full ]; then
    die "DMS_DEMO_MODE=full, but no container can run here (see above)"
  fi
fi

ensure_venv "$ROOT/requirements/demo.txt"
stage
mkdir -p "$ROOT/demo-output"
if [ "$full" = true ]; then
  say "running dms.mailserver.site on localhost: full deployment (writes into $ROOT/demo-output)"
else
  say "running dms.mailserver.site on localhost: config-only (writes into $ROOT/demo-output)"
fi
ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_LOCALHOST_WARNING=False \
  ansible-playbook -i "$ROOT/hack/demo/inventory.yml" \
  -e "dms_demo_dir=$ROOT/demo-output" -e "dms_demo_full=$full" \
  "$ROOT/hack/demo/playbook.yml" "$@"
say "DNS records: $ROOT/demo-output/dns/dns-records.txt; passwords: $ROOT/demo-output/credentials/"
