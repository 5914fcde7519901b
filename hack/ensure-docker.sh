#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info` on this machine.
#
# Idempotent: exits 0 at once when `docker info` already works. Otherwise (as
# root) installs Debian's docker.io package if dockerd or the docker client is
# missing, starts dockerd in the background and waits until it answers.
#
# Environment:
#   DMS_DOCKERD_LOG      where dockerd's output goes (default /var/log/dms-dockerd.log)
#   DMS_DOCKERD_TIMEOUT  seconds to wait for dockerd to answer (default 60)
set -euo pipefail

readonly DOCKERD_LOG="${DMS_DOCKERD_LOG:-/var/log/dms-dockerd.log}"
readonly TIMEOUT="${DMS_DOCKERD_TIMEOUT:-60}"
readonly DOCKERD_PIDFILE=/var/run/docker.pid

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

docker_answers() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

dockerd_running() {
  local pid
  [[ -s "${DOCKERD_PIDFILE}" ]] || return 1
  pid="$(<"${DOCKERD_PIDFILE}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null
}

install_docker() {
  log "dockerd or the docker client is missing: installing Debian's docker.io"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install a Docker engine by hand"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends docker.io >&2 \
    || die "apt-get install docker.io failed"
}

start_dockerd() {
  log "starting dockerd (log: ${DOCKERD_LOG})"
  mkdir -p "$(dirname "${DOCKERD_LOG}")"
  # setsid: dockerd must outlive this script and the shell that called it.
  setsid nohup dockerd >>"${DOCKERD_LOG}" 2>&1 </dev/null &
  disown || true
}

wait_for_docker() {
  local waited=0
  until docker_answers; do
    if (( waited >= TIMEOUT )); then
      log "last lines of ${DOCKERD_LOG}:"
      tail -n 30 "${DOCKERD_LOG}" >&2 2>/dev/null || true
      die "dockerd did not answer 'docker info' within ${TIMEOUT}s"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "docker is ready after ${waited}s"
}

main() {
  if docker_answers; then
    exit 0
  fi
  (( EUID == 0 )) || die "docker info fails and this is not root: cannot install or start dockerd (run as root, or start Docker yourself)"

  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    install_docker
  fi
  command -v dockerd >/dev/null 2>&1 || die "dockerd still not found after installing docker.io"

  if dockerd_running; then
    log "dockerd is already running (pid $(<"${DOCKERD_PIDFILE}")): waiting for it to answer"
  else
    start_dockerd
  fi
  wait_for_docker
}

main "$@"
