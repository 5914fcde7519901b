#!/usr/bin/env bash
# Functions shared by the entrypoint and the change detector of the dms-test
# image. They turn the files of the DMS config volume (/tmp/docker-mailserver)
# into Postfix and Dovecot configuration, as the docker-mailserver image does.
# Sourced, not run.
# shellcheck disable=SC2034 # the constants are used by the scripts that source this

readonly DMS_CONFIG=/tmp/docker-mailserver
readonly DMS_CHKSUM_FILE=/tmp/docker-mailserver-config-chksum
readonly DMS_VMAIL_UID=5000
readonly DMS_VMAIL_GID=5000
readonly DMS_TLS_DIR=/etc/dms/tls
readonly DMS_SETTINGS=/etc/dms-settings
readonly DMS_CD_LOCK="${DMS_CONFIG}/check-for-changes.sh.lock"

# Config-volume files whose changes the change detector applies while running
# (DMS's list; only those that exist are watched). Rspamd's files and the TLS
# files are added by _watched_paths.
readonly DMS_WATCHED_FILES=(
  postfix-accounts.cf
  postfix-virtual.cf
  postfix-regexp.cf
  postfix-aliases.cf
  postfix-relaymap.cf
  postfix-sasl-password.cf
  dovecot-quotas.cf
  dovecot-masters.cf
)

# The settings of /etc/dms-settings (written at start) when they exist: the
# change detector and the health check read the same values as the start script.
if [[ -r "${DMS_SETTINGS}" ]]; then
  # shellcheck source=/dev/null
  source "${DMS_SETTINGS}"
fi

# Dovecot 2.4 (DMS 16 line) or 2.3 (DMS 15 line).
DMS_DOVECOT_VERSION="$(dovecot --version 2>/dev/null || true)"
_dovecot24() {
  [[ "${DMS_DOVECOT_VERSION}" == 2.4* ]]
}

# ---------------------------------------------------------------------------
# Logging: "<date> LEVEL <program>: message" on stderr, filtered by LOG_LEVEL
# (error, warn, info, debug, trace; default info).

_log_rank() {
  case "${1,,}" in
    error) echo 1 ;;
    warn) echo 2 ;;
    debug) echo 4 ;;
    trace) echo 5 ;;
    *) echo 3 ;;
  esac
}

_log() {
  local level="$1"; shift
  (( $(_log_rank "${level}") <= $(_log_rank "${LOG_LEVEL:-info}") )) || return 0
  printf '%s %-5s %s: %s\n' "$(date --rfc-3339=seconds)" "${level^^}" "${DMS_PROG:-dms-test}" "$*" >&2
}

# A fatal error, as DMS handles it: log it, then stop the whole container
# through PID 1 (dumb-init -> supervisord), which exits with status 0.
# Once per container: a second SIGTERM can reach supervisord while Python is
# shutting down (its handlers gone) and kill it (exit status 143). The traps
# are cleared for the exit below, and the marker directory (mkdir is atomic)
# covers a _die in a subshell, e.g. in $(...), whose failure then runs the
# calling shell's ERR trap (DMS stops its start script with SIGUSR1 instead).
_die() {
  trap - ERR EXIT
  mkdir /run/dms-test-shutting-down 2>/dev/null || exit 1
  _log error "$*"
  _log error "Shutting down"
  sleep 1
  kill -SIGTERM 1
  exit 1
}

# ---------------------------------------------------------------------------
# Reading config-volume files.

# Like DMS: CRLF line endings and a missing final newline are fixed in place
# (when the file is writable), so that every line is read.
_fix_line_endings() {
  local file="$1"
  [[ -s "${file}" ]] || return 0
  if grep -q $'\r' "${file}"; then
    if [[ -w "${file}" ]]; then
      _log warn "File '${file}' contains CRLF line-endings - converting to LF"
      sed -i 's/\r//g' "${file}"
    else
      _log warn "File '${file}' contains CRLF line-endings and is not writable - cannot convert"
    fi
  fi
  if [[ -n "$(tail -c 1 "${file}")" ]]; then
    if [[ -w "${file}" ]]; then
      printf '\n' >>"${file}"
      _log info "File '${file}' was missing a final newline - this has been fixed"
    else
      _log warn "File '${file}' is missing a final newline and is not writable - its last line is ignored"
    fi
  fi
}

# Print the data lines of a file: blank lines and lines whose first non-blank
# character is '#' are skipped. Prints nothing if the file does not exist.
_valid_lines() {
  local file="$1"
  [[ -f "${file}" ]] || return 0
  _fix_line_endings "${file}"
  grep -E -v '^\s*$|^\s*#' "${file}" || true
}

# Replace DEST with the content read from stdin, atomically.
_install_file() {
  local dest="$1" owner="${2:-root:root}" mode="${3:-0644}" tmp
  tmp="$(mktemp "${dest}.XXXXXX")"
  cat >"${tmp}"
  chown "${owner}" "${tmp}"
  chmod "${mode}" "${tmp}"
  mv -f "${tmp}" "${dest}"
}

# postconf -e, then make main.cf look older: Postfix programs that read a
# main.cf changed within the last second wait until it is not (about 2 s).
_postconf() {
  postconf -e "$@"
  touch -d '3 seconds ago' /etc/postfix/main.cf
}

_enabled() {
  [[ "${1:-0}" == 1 ]]
}

# ---------------------------------------------------------------------------
# Accounts, quotas, virtual domains, aliases.

# Dovecot userdb fields for the quota of LOGIN in dovecot-quotas.cf, found as
# DMS finds it: the first line that contains "LOGIN:" anywhere, without regard
# to case, with LOGIN taken as a basic regular expression (so a.b@x.com also
# finds axb@x.com, and bob@x.com finds jimbob@x.com's line if that comes first).
_quota_fields() {
  local login="$1" file="${DMS_CONFIG}/dovecot-quotas.cf" line
  local -a quota
  [[ -f "${file}" ]] || return 0
  line="$(grep -i -- "${login}:" "${file}" | head -n 1)" || true
  IFS=':' read -r -a quota <<<"${line}"
  (( ${#quota[@]} == 2 )) || return 0
  if _dovecot24; then
    printf 'userdb_quota_storage_size=%s' "${quota[1]}"
    # DMS 16 adds a grace of a tenth of the size, by integer division.
    if [[ "${quota[1]}" =~ ^([1-9][0-9]*)([BkMGT])$ ]]; then
      printf ' userdb_quota_storage_grace=%s%s' "$(( BASH_REMATCH[1] / 10 ))" "${BASH_REMATCH[2]}"
    fi
  else
    printf 'userdb_quota_rule=*:bytes=%s' "${quota[1]}"
  fi
}

_make_maildir_home() {
  local domain="$1" user="$2" dir
  for dir in "/var/mail/${domain}" "/var/mail/${domain}/${user}" "/var/mail/${domain}/${user}/home"; do
    if [[ ! -d "${dir}" ]]; then
      mkdir "${dir}"
      chown "${DMS_VMAIL_UID}:${DMS_VMAIL_GID}" "${dir}"
    fi
  done
}

# postfix-accounts.cf -> /etc/dovecot/userdb (passdb and userdb) and
# /etc/postfix/vmailbox (virtual_mailbox_maps).
_build_accounts() {
  local accounts="${DMS_CONFIG}/postfix-accounts.cf"
  local header="# Generated at start and on change from ${accounts}: edit that file instead."
  local userdb vmailbox login pass attrs user domain quota line
  userdb="$(mktemp)"
  vmailbox="$(mktemp)"
  printf '%s\n' "${header}" >"${userdb}"
  printf '%s\n' "${header}" >"${vmailbox}"

  while IFS='|' read -r login pass attrs; do
    if [[ "${login}" != *@* ]]; then
      _log warn "Ignoring line of postfix-accounts.cf without a user@domain login: '${login}'"
      continue
    fi
    user="${login%%@*}"
    domain="${login#*@}"

    line="${login} ${domain}/${user}/"
    if grep -qxF -- "${line}" "${vmailbox}"; then
      _log warn "User '${login}' will not be added to '/etc/postfix/vmailbox' twice"
    else
      printf '%s\n' "${line}" >>"${vmailbox}"
    fi

    if _enabled "${ENABLE_QUOTAS}"; then
      quota="$(_quota_fields "${login}")"
      if [[ -n "${quota}" ]]; then
        attrs="${attrs:+${attrs} }${quota}"
      fi
    fi
    line="${login}:${pass}:${DMS_VMAIL_UID}:${DMS_VMAIL_GID}::/var/mail/${domain}/${user}/home::${attrs}"
    if grep -qxF -- "${line}" "${userdb}"; then
      _log warn "Login '${login}' will not be added to '/etc/dovecot/userdb' twice"
    else
      printf '%s\n' "${line}" >>"${userdb}"
    fi

    _make_maildir_home "${domain}" "${user}"
  done < <(_valid_lines "${accounts}")

  _install_file /etc/dovecot/userdb dovecot:dovecot 0640 <"${userdb}"
  _install_file /etc/postfix/vmailbox root:root 0644 <"${vmailbox}"
  rm -f "${userdb}" "${vmailbox}"
  _log debug "Built /etc/dovecot/userdb and /etc/postfix/vmailbox"
}

# Per-user Sieve scripts, as DMS's _create_accounts: the volume's
# <login>.dovecot.sieve of each account is copied over the account's
# home/.dovecot.sieve (through a ManageSieve symlink, as cp does). A script
# removed from the volume leaves the copy in the home as it is. Run at the first
# start and by the change detector only when it rebuilds the accounts (see
# _accounts_rebuild_needed), never because the script itself changed.
_copy_user_sieve_scripts() {
  local login user domain
  while IFS='|' read -r login _; do
    [[ "${login}" == *@* ]] || continue
    user="${login%%@*}"
    domain="${login#*@}"
    if [[ -e "${DMS_CONFIG}/${login}.dovecot.sieve" ]]; then
      cp "${DMS_CONFIG}/${login}.dovecot.sieve" "/var/mail/${domain}/${user}/home/.dovecot.sieve"
    fi
  done < <(_valid_lines "${DMS_CONFIG}/postfix-accounts.cf")
  # As DMS's _chown_var_mail_if_necessary, which looks only 3 levels deep: a
  # new copy stays root's, with the mode of the volume's file (cp), so Dovecot
  # (uid 5000) can read it only when that file is readable by others.
  if [[ -n "$(find /var/mail -maxdepth 3 \( \! -user "${DMS_VMAIL_UID}" -o \! -group "${DMS_VMAIL_GID}" \) -print -quit)" ]]; then
    chown -R "${DMS_VMAIL_UID}:${DMS_VMAIL_GID}" /var/mail
  fi
}

# DMS's change detector rebuilds the accounts (and copies the Sieve scripts)
# only when one of these files changed; CHANGED is its list of changed paths.
_accounts_rebuild_needed() {
  grep -qE "^${DMS_CONFIG}/(postfix-accounts|postfix-virtual|postfix-aliases|dovecot-quotas|dovecot-masters)[.]cf$" <<<"$1"
}

# virtual_mailbox_domains: the domains of all accounts and of all alias keys
# that have one (user@domain and @domain catch-alls).
_build_vhost() {
  {
    _valid_lines "${DMS_CONFIG}/postfix-accounts.cf" | cut -d'|' -f1 | awk -F@ 'NF > 1 { print $NF }'
    _valid_lines "${DMS_CONFIG}/postfix-virtual.cf" | awk '{ print $1 }' | awk -F@ 'NF > 1 && $NF != "" { print $NF }'
  } | sort -u | _install_file /etc/postfix/vhost
}

# postfix-virtual.cf and postfix-regexp.cf are used as they are.
_build_alias() {
  local name="$1" src="${DMS_CONFIG}/postfix-$1.cf"
  if [[ -f "${src}" ]]; then
    _fix_line_endings "${src}"
    _install_file "/etc/postfix/${name}" <"${src}"
  else
    _install_file "/etc/postfix/${name}" </dev/null
  fi
}

_build_aliases() {
  _build_alias virtual
  _build_alias regexp
}

# ---------------------------------------------------------------------------
# Relay hosts (never used for delivery here: outbound mail is disabled).

_relay_in_use() {
  [[ -f "${DMS_CONFIG}/postfix-relaymap.cf" || -n "${DEFAULT_RELAY_HOST:-}" || -n "${RELAY_HOST:-}" ]]
}

_build_relay_sasl() {
  local sasl="${DMS_CONFIG}/postfix-sasl-password.cf" relay=''
  if [[ ! -f "${sasl}" ]] && [[ -z "${RELAY_USER:-}" || -z "${RELAY_PASSWORD:-}" ]]; then
    _log warn "Missing relay-host mapped credentials provided via ENV, or from ${sasl}"
    return 0
  fi
  if [[ -n "${DEFAULT_RELAY_HOST:-}" ]]; then
    relay="${DEFAULT_RELAY_HOST}"
  elif [[ -n "${RELAY_HOST:-}" ]]; then
    relay="[${RELAY_HOST}]:${RELAY_PORT:-25}"
  fi
  {
    _valid_lines "${sasl}"
    if [[ -n "${relay}" && -n "${RELAY_USER:-}" && -n "${RELAY_PASSWORD:-}" ]]; then
      printf '%s    %s:%s\n' "${relay}" "${RELAY_USER}" "${RELAY_PASSWORD}"
    fi
  } | _install_file /etc/postfix/sasl_passwd root:root 0600
  _postconf \
    'smtp_sasl_auth_enable = yes' \
    'smtp_sasl_password_maps = texthash:/etc/postfix/sasl_passwd' \
    'smtp_sasl_security_options = noanonymous' \
    'smtp_sender_dependent_authentication = yes' \
    'smtp_tls_security_level = encrypt'
}

_build_relayhost_map() {
  local relaymap="${DMS_CONFIG}/postfix-relaymap.cf" map domain escaped
  map="$(mktemp)"
  # Only lines with a key and a value: "@domain" alone opts a domain out.
  _valid_lines "${relaymap}" | grep -E '^\s*[^#[:space:]]\S*\s+\S' >"${map}" || true
  if [[ -n "${RELAY_HOST:-}" ]]; then
    while read -r domain; do
      [[ -n "${domain}" ]] || continue
      escaped="${domain//./\\.}"
      # Keep an explicit entry, and honour an opt-out ("@domain" alone).
      if grep -qE "^\s*@${escaped}\s+" "${map}"; then
        continue
      fi
      if [[ -f "${relaymap}" ]] && grep -qE "^\s*@${escaped}\s*$" "${relaymap}"; then
        continue
      fi
      printf '@%s    [%s]:%s\n' "${domain}" "${RELAY_HOST}" "${RELAY_PORT:-25}" >>"${map}"
    done </etc/postfix/vhost
  fi
  _install_file /etc/postfix/relayhost_map root:root 0600 <"${map}"
  rm -f "${map}"
  _postconf 'sender_dependent_relayhost_maps = texthash:/etc/postfix/relayhost_map'
}

# dovecot-masters.cf (name|{SCHEME}hash) -> /etc/dovecot/masterdb (name:hash),
# as DMS's _create_masters: masterdb is emptied at every rebuild; while the
# config volume has the file, masterdb is dovecot's (0640) and dovecot.conf's
# "#!include auth-master.inc" is uncommented (for good: a later removal of the
# file only empties masterdb). Lines are split at the first "|" like DMS's
# "IFS='|' read"; a line repeated is written once, with DMS's warning.
_build_masters() {
  local masters="${DMS_CONFIG}/dovecot-masters.cf" masterdb=/etc/dovecot/masterdb
  local tmp login pass line
  tmp="$(mktemp)"
  if [[ -f "${masters}" ]]; then
    while IFS='|' read -r login pass; do
      line="${login}:${pass}"
      if grep -qF -- "${line}" "${tmp}"; then
        _log warn "Login '${login}' will not be added to '${masterdb}' twice"
      else
        printf '%s\n' "${line}" >>"${tmp}"
      fi
    done < <(_valid_lines "${masters}")
    _install_file "${masterdb}" dovecot:dovecot 0640 <"${tmp}"
    sed -i -e 's/^#\(!include auth-master\.inc\)$/\1/' /etc/dovecot/dovecot.conf
    _log debug "Built ${masterdb}"
  else
    _install_file "${masterdb}" root:root 0644 <"${tmp}"
  fi
  rm -f "${tmp}"
}

_build_relay() {
  if ! _relay_in_use; then
    _log debug "No relay host configured"
    return 0
  fi
  _build_relay_sasl
  _build_relayhost_map
}

# Everything derived from the watched files.
_build_from_watched_files() {
  _build_accounts
  _build_masters
  _build_vhost
  _build_aliases
  _build_relay
}

# ---------------------------------------------------------------------------
# Change detection.

_account_count() {
  local count
  count="$(grep -cE '.+@.+\|' "${DMS_CONFIG}/postfix-accounts.cf" 2>/dev/null)" || true
  echo "${count:-0}"
}

# The paths the change detector watches: DMS's table files, all files under
# rspamd/ with Rspamd on, and the TLS files of SSL_TYPE manual or letsencrypt.
_watched_paths() {
  local file domain
  for file in "${DMS_WATCHED_FILES[@]}"; do
    printf '%s\n' "${DMS_CONFIG}/${file}"
  done
  if _enabled "${ENABLE_RSPAMD:-0}" && [[ -d "${DMS_CONFIG}/rspamd" ]]; then
    find "${DMS_CONFIG}/rspamd" -type f | LC_ALL=C sort
  fi
  case "${SSL_TYPE:-}" in
    manual)
      for file in "${SSL_KEY_PATH:-}" "${SSL_CERT_PATH:-}" "${SSL_ALT_KEY_PATH:-}" "${SSL_ALT_CERT_PATH:-}"; do
        [[ -n "${file}" ]] && printf '%s\n' "${file}"
      done
      ;;
    letsencrypt)
      printf '%s\n' /etc/letsencrypt/acme.json
      for domain in "${SSL_DOMAIN:-}" "${DMS_HOSTNAME:-}" "${DMS_DOMAINNAME:-}"; do
        domain="${domain#\*.}"
        [[ -n "${domain}" ]] || continue
        find -L "/etc/letsencrypt/live/${domain}" -maxdepth 1 -name '*.pem' -type f 2>/dev/null | LC_ALL=C sort
      done
      ;;
  esac
}

# sha512sum lines of the watched paths that exist (content only: `touch` alone
# changes nothing; symbolic links are followed, as for certbot's live/ files).
_checksums() {
  local path
  while IFS= read -r path; do
    [[ -f "${path}" ]] && sha512sum -- "${path}"
  done < <(_watched_paths | awk '!seen[$0]++')
  return 0
}

# The change detector's lock in the config volume, as DMS's: the file holds the
# holder's id; a lock older than a minute is stale and removed; otherwise wait
# and retry every 5 s. Only the holder removes it.
_cd_lock() {
  local id="$1"
  while [[ -e "${DMS_CD_LOCK}" ]]; do
    if [[ -n "$(find "${DMS_CD_LOCK}" -mmin +1 2>/dev/null)" ]]; then
      _log warn "Lock file older than 1 minute - removing stale lock file"
      rm -f "${DMS_CD_LOCK}"
    else
      _log warn "Lock file '${DMS_CD_LOCK}' exists - another execution of this script may be running - trying again in 5 seconds"
      sleep 5
    fi
  done
  printf '%s\n' "${id}" >"${DMS_CD_LOCK}"
}

_cd_unlock() {
  local id="$1"
  if [[ -e "${DMS_CD_LOCK}" && "$(<"${DMS_CD_LOCK}")" == "${id}" ]]; then
    rm -f "${DMS_CD_LOCK}"
  fi
}

# Rspamd's overrides: the volume's rspamd/override.d/* replace everything in
# /etc/rspamd/override.d/ (at start and whenever one of them changes).
_copy_rspamd_overrides() {
  local dir="${DMS_CONFIG}/rspamd/override.d"
  rm -f /etc/rspamd/override.d/*
  if [[ -d "${dir}" ]] && [[ -n "$(find "${dir}" -mindepth 1 -maxdepth 1 -type f)" ]]; then
    cp "${dir}"/* /etc/rspamd/override.d/
    chmod a+r /etc/rspamd/override.d/*
    _log debug "Copied the Rspamd overrides of ${dir}"
  fi
}
