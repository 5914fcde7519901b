#!/usr/bin/env bash
# Build the container images the integration tests use in place of the real
# docker-mailserver (DMS) image, which cannot be pulled here:
#
#   dms-test-base:bookworm  Debian 12 minbase tree made with debootstrap and
#                           imported with `docker import` (no registry needed)
#   dms-test:local          tests/dms-image/Dockerfile on top of that base
#   dms-fw-test:local      tests/firewall-image/Dockerfile on top of that base:
#                           the hosts and clients of the molecule scenario
#                           "firewall" (nftables, ufw, firewalld, sshd)
#
# Each image is built only when missing. dms-test:local and dms-fw-test:local
# are also rebuilt when the files of their build context changed since they were
# built (their hash is kept in an image label), or when the base was rebuilt.
# --rebuild rebuilds all of them from scratch.
#
# Usage: hack/build-test-images.sh [--rebuild]
#
# Environment:
#   DMS_TEST_BASE_IMAGE  base image tag (default dms-test-base:bookworm)
#   DMS_TEST_IMAGE       test image tag (default dms-test:local)
#   DMS_FW_TEST_IMAGE    firewall scenario image tag (default dms-fw-test:local)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly CONTEXT_DIR="${REPO_ROOT}/tests/dms-image"
readonly BASE_IMAGE="${DMS_TEST_BASE_IMAGE:-dms-test-base:bookworm}"
readonly TEST_IMAGE="${DMS_TEST_IMAGE:-dms-test:local}"
readonly FW_CONTEXT_DIR="${REPO_ROOT}/tests/firewall-image"
readonly FW_IMAGE="${DMS_FW_TEST_IMAGE:-dms-fw-test:local}"
readonly SUITE=bookworm
readonly HASH_LABEL=org.dms-test.source-sha256
readonly LOCK_FILE="${TMPDIR:-/tmp}/dms-test-build-images.lock"

log() { printf 'build-test-images: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# After a rebuild, remove the image that the tag pointed to before (left
# untagged), unless something still uses it.
remove_replaced() {
  local tag="$1" old_id="$2"
  [[ -n "${old_id}" && "$(image_id "${tag}")" != "${old_id}" ]] || return 0
  # Removing the old test image may already have removed the old base with it.
  image_exists "${old_id}" || return 0
  docker image rm "${old_id}" >/dev/null 2>&1 || log "kept the previous ${tag} (${old_id}): still in use"
}

# Hash of every file of a build context (names and contents), so that an image
# built from other sources is rebuilt. Default context: tests/dms-image.
context_hash() {
  (
    cd "${1:-${CONTEXT_DIR}}"
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    find . -type f -perm -u+x -print0 | LC_ALL=C sort -z | xargs -0 -r printf 'exec %s\n'
  ) | sha256sum | cut -d' ' -f1
}

ROOTFS_DIR=''
cleanup() {
  if [[ -n "${ROOTFS_DIR}" && -d "${ROOTFS_DIR}" ]]; then
    rm -rf --one-file-system "${ROOTFS_DIR}"
  fi
}

build_base() {
  (( EUID == 0 )) || die "debootstrap needs root to build ${BASE_IMAGE}"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends debootstrap >&2 || die "could not install debootstrap"
  fi

  ROOTFS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dms-test-rootfs.XXXXXX")"
  trap cleanup EXIT
  local root="${ROOTFS_DIR}/root"
  log "debootstrap --variant=minbase ${SUITE} (log: ${ROOTFS_DIR}/debootstrap.log)"
  if ! debootstrap --variant=minbase "${SUITE}" "${root}" >"${ROOTFS_DIR}/debootstrap.log" 2>&1; then
    tail -n 30 "${ROOTFS_DIR}/debootstrap.log" >&2 || true
    die "debootstrap failed"
  fi

  # Nothing of the build machine goes into the image, and the image stays small.
  rm -rf "${root}"/var/cache/apt/archives/*.deb "${root}"/var/cache/apt/*.bin \
    "${root}"/var/lib/apt/lists/* "${root}"/usr/share/doc/* "${root}"/usr/share/man/* \
    "${root}"/usr/share/info/* "${root}"/var/log/*.log
  find "${root}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  : >"${root}/etc/resolv.conf"
  : >"${root}/etc/machine-id"
  rm -f "${root}/etc/hostname"
  printf '127.0.0.1\tlocalhost\n' >"${root}/etc/hosts"
  cat >"${root}/etc/dpkg/dpkg.cfg.d/01-dms-test-nodoc" <<'CFG'
# dms-test images: no documentation or translations.
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
CFG
  cat >"${root}/etc/apt/apt.conf.d/01-dms-test" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG

  log "importing ${BASE_IMAGE}"
  tar --numeric-owner -C "${root}" -c . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase ${SUITE}" \
        - "${BASE_IMAGE}" >/dev/null \
    || die "docker import of ${BASE_IMAGE} failed"
  cleanup
  ROOTFS_DIR=''
}

build_test() {
  local hash="$1" no_cache="$2"
  local -a args=(--network host --label "${HASH_LABEL}=${hash}" -t "${TEST_IMAGE}")
  [[ "${no_cache}" == 1 ]] && args+=(--no-cache)
  log "building ${TEST_IMAGE} from ${CONTEXT_DIR}"
  # The classic builder: it needs no buildx plugin. --network host: apt-get in
  # the build resolves and connects exactly as apt-get on this machine does.
  DOCKER_BUILDKIT=0 docker build "${args[@]}" "${CONTEXT_DIR}" >&2 \
    || die "docker build of ${TEST_IMAGE} failed"
}

# The firewall scenario's image, built like dms-test:local from its own context
# (its own function: the DMS stand-in's steps stay as they are).
build_firewall_image() {
  local base_built="$1" rebuild="$2" hash current='' old start
  [[ -f "${FW_CONTEXT_DIR}/Dockerfile" ]] || die "no Dockerfile in ${FW_CONTEXT_DIR}"
  hash="$(context_hash "${FW_CONTEXT_DIR}")"
  old="$(image_id "${FW_IMAGE}")"
  if [[ -n "${old}" ]]; then
    current="$(docker image inspect -f "{{ index .Config.Labels \"${HASH_LABEL}\" }}" "${FW_IMAGE}")"
  fi
  if (( rebuild == 1 || base_built == 1 )) || [[ "${current}" != "${hash}" ]]; then
    start=${SECONDS}
    local -a args=(--network host --label "${HASH_LABEL}=${hash}" -t "${FW_IMAGE}")
    (( rebuild == 1 )) && args+=(--no-cache)
    log "building ${FW_IMAGE} from ${FW_CONTEXT_DIR}"
    DOCKER_BUILDKIT=0 docker build "${args[@]}" "${FW_CONTEXT_DIR}" >&2 \
      || die "docker build of ${FW_IMAGE} failed"
    log "${FW_IMAGE} built in $((SECONDS - start))s"
    remove_replaced "${FW_IMAGE}" "${old}"
  else
    log "${FW_IMAGE} present and up to date"
  fi
}

main() {
  local rebuild=0
  while (( $# > 0 )); do
    case "$1" in
      --rebuild) rebuild=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done

  [[ -f "${CONTEXT_DIR}/Dockerfile" ]] || die "no Dockerfile in ${CONTEXT_DIR}"
  "${SCRIPT_DIR}/ensure-docker.sh"

  # One build at a time (several test runs may call this at once).
  exec 9>"${LOCK_FILE}"
  flock 9

  local base_built=0 old_base old_test
  old_base="$(image_id "${BASE_IMAGE}")"
  old_test="$(image_id "${TEST_IMAGE}")"
  if (( rebuild == 1 )) || [[ -z "${old_base}" ]]; then
    local start=${SECONDS}
    build_base
    base_built=1
    log "${BASE_IMAGE} built in $((SECONDS - start))s"
  else
    log "${BASE_IMAGE} present"
  fi

  local hash current=''
  hash="$(context_hash)"
  if image_exists "${TEST_IMAGE}"; then
    current="$(docker image inspect -f "{{ index .Config.Labels \"${HASH_LABEL}\" }}" "${TEST_IMAGE}")"
  fi
  if (( rebuild == 1 || base_built == 1 )) || [[ "${current}" != "${hash}" ]]; then
    local start=${SECONDS}
    build_test "${hash}" "${rebuild}"
    log "${TEST_IMAGE} built in $((SECONDS - start))s"
    remove_replaced "${TEST_IMAGE}" "${old_test}"
  else
    log "${TEST_IMAGE} present and up to date"
  fi

  build_firewall_image "${base_built}" "${rebuild}"
  # Last: the images built from the previous base are replaced by now.
  remove_replaced "${BASE_IMAGE}" "${old_base}"
}

main "$@"
