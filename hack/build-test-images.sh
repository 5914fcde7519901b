#!/usr/bin/env bash
# Build the container images the tests use in place of the real docker-mailserver
# (DMS) image, which cannot be pulled here:
#
#   dms-test-base:bookworm  Debian 12 minbase tree made with debootstrap and
#   dms-test-base:trixie    Debian 13 likewise; both loaded with `docker import`
#                           (no registry needed)
#   dms-test:15.1           tests/dms-image, DMS 15.1 line (Debian 12, Dovecot
#                           2.3, no HEALTHCHECK in the image, like DMS 15.1.0)
#   dms-test:16             tests/dms-image, DMS 16 line (Debian 13, Dovecot
#                           2.4, DMS 16's health check)
#   dms-test-dns:local      tests/dns-image: dnsmasq, the DNS server the molecule
#                           scenarios give the mail servers (resolvable senders)
#   dms-fw-test:local       tests/firewall-image: the hosts and clients of the
#                           molecule scenario "firewall"
#
# Each image is built only when missing, when the files of its build context
# changed since it was built (their hash is kept in an image label), or when its
# base was rebuilt. --rebuild rebuilds the named images (and their bases) from
# scratch.
#
# Usage: hack/build-test-images.sh [--rebuild] [15.1|16|dns|firewall ...]
#        (no name: all of them)
#
# Environment:
#   DMS_BUILD_LOG  where the build output goes (default: a file under TMPDIR);
#                  one progress line per image is printed, the log's tail on failure
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly HASH_LABEL=org.dms-test.source-sha256
readonly LOCK_FILE="${TMPDIR:-/tmp}/dms-test-build-images.lock"
BUILD_LOG="${DMS_BUILD_LOG:-${TMPDIR:-/tmp}/dms-test-build-images.log}"
readonly BUILD_LOG

log() { printf 'build-test-images: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# Run a build step with its output in the log; on failure show the log's tail.
logged() {
  local what="$1"; shift
  printf '\n===== %s: %s\n' "$(date --rfc-3339=seconds)" "${what}" >>"${BUILD_LOG}"
  if ! "$@" >>"${BUILD_LOG}" 2>&1; then
    tail -n 40 "${BUILD_LOG}" >&2 || true
    die "${what} failed (log: ${BUILD_LOG})"
  fi
}

# After a rebuild, remove the image that the tag pointed to before (left
# untagged), unless something still uses it.
remove_replaced() {
  local tag="$1" old_id="$2"
  [[ -n "${old_id}" && "$(image_id "${tag}")" != "${old_id}" ]] || return 0
  image_exists "${old_id}" || return 0
  docker image rm "${old_id}" >/dev/null 2>&1 || log "kept the previous ${tag} (${old_id}): still in use"
}

# Hash of every file of a build context (names, contents, executable bits) and
# of the build arguments, so that an image built from other sources is rebuilt.
context_hash() {
  local dir="$1"; shift
  (
    cd "${dir}"
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    find . -type f -perm -u+x -print0 | LC_ALL=C sort -z | xargs -0 -r printf 'exec %s\n'
    printf 'arg %s\n' "$@"
  ) | sha256sum | cut -d' ' -f1
}

ROOTFS_DIR=''
cleanup() {
  if [[ -n "${ROOTFS_DIR}" && -d "${ROOTFS_DIR}" ]]; then
    rm -rf --one-file-system "${ROOTFS_DIR}"
  fi
}
trap cleanup EXIT

# A Debian minbase tree for SUITE, trimmed (no docs, no apt lists, nothing of the
# build machine), imported as dms-test-base:SUITE.
build_base() {
  local suite="$1" tag="dms-test-base:$1"
  (( EUID == 0 )) || die "debootstrap needs root to build ${tag}"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    logged "apt-get update" apt-get update -q
    logged "apt-get install debootstrap" apt-get install -y -q --no-install-recommends debootstrap
  fi
  ROOTFS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dms-test-rootfs.XXXXXX")"
  local root="${ROOTFS_DIR}/root"
  logged "debootstrap --variant=minbase ${suite}" debootstrap --variant=minbase "${suite}" "${root}"

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

  import_tree() {
    tar --numeric-owner -C "${root}" -c . \
      | docker import \
          --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
          --change 'CMD ["/bin/bash"]' \
          --message "debootstrap --variant=minbase ${suite}" \
          - "${tag}"
  }
  logged "docker import ${tag}" import_tree
  cleanup
  ROOTFS_DIR=''
}

BASES_BUILT=' '
# ensure_base SUITE REBUILD: build dms-test-base:SUITE when missing (or asked).
ensure_base() {
  local suite="$1" rebuild="$2" start=${SECONDS}
  [[ "${BASES_BUILT}" == *" ${suite} "* ]] && return 0
  if (( rebuild == 1 )) || ! image_exists "dms-test-base:${suite}"; then
    log "building dms-test-base:${suite} with debootstrap (log: ${BUILD_LOG})"
    build_base "${suite}"
    BASES_BUILT+="${suite} "
    log "dms-test-base:${suite} built in $((SECONDS - start))s"
  fi
}

# build_image TAG CONTEXT SUITE REBUILD [docker build arguments...]
build_image() {
  local tag="$1" context="$2" suite="$3" rebuild="$4"; shift 4
  local hash current='' old start=${SECONDS}
  ensure_base "${suite}" "${rebuild}"
  [[ -f "${context}/Dockerfile" ]] || die "no Dockerfile in ${context}"
  hash="$(context_hash "${context}" "${suite}" "$@" "$(image_id "dms-test-base:${suite}")")"
  old="$(image_id "${tag}")"
  if [[ -n "${old}" ]]; then
    current="$(docker image inspect -f "{{ index .Config.Labels \"${HASH_LABEL}\" }}" "${tag}")"
  fi
  if (( rebuild == 0 )) && [[ "${current}" == "${hash}" ]]; then
    log "${tag} present and up to date"
    return 0
  fi
  local -a args=(--network host --build-arg "DMS_SUITE=${suite}" --label "${HASH_LABEL}=${hash}" -t "${tag}" "$@")
  (( rebuild == 1 )) && args+=(--no-cache)
  log "building ${tag} from ${context#"${REPO_ROOT}/"} (log: ${BUILD_LOG})"
  # The classic builder: it needs no buildx plugin. --network host: apt-get in
  # the build resolves and connects exactly as apt-get on this machine does.
  DOCKER_BUILDKIT=0 logged "docker build ${tag}" docker build "${args[@]}" "${context}"
  log "${tag} built in $((SECONDS - start))s"
  remove_replaced "${tag}" "${old}"
}

main() {
  local rebuild=0 name
  local -a names=()
  while (( $# > 0 )); do
    case "$1" in
      --rebuild) rebuild=1 ;;
      -h | --help) usage; exit 0 ;;
      15.1 | 16 | dns | firewall) names+=("$1") ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done
  (( ${#names[@]} > 0 )) || names=(15.1 16 dns firewall)

  "${SCRIPT_DIR}/ensure-docker.sh"

  # One build at a time (several test runs may call this at once).
  exec 9>"${LOCK_FILE}"
  flock 9
  : >"${BUILD_LOG}"

  for name in "${names[@]}"; do
    case "${name}" in
      15.1) build_image dms-test:15.1 "${REPO_ROOT}/tests/dms-image" bookworm "${rebuild}" --target dms15 ;;
      16) build_image dms-test:16 "${REPO_ROOT}/tests/dms-image" trixie "${rebuild}" --target dms16 ;;
      dns) build_image dms-test-dns:local "${REPO_ROOT}/tests/dns-image" bookworm "${rebuild}" ;;
      firewall) build_image dms-fw-test:local "${REPO_ROOT}/tests/firewall-image" bookworm "${rebuild}" ;;
    esac
  done
}

main "$@"
