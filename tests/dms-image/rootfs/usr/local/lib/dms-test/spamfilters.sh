#!/usr/bin/env bash
# Anti-spam parts of the dms-test images, sourced by the start script and the
# change detector after lib.sh: Rspamd's custom commands
# (rspamd/custom-commands.conf), Amavis with SpamAssassin inside it
# (amavis.cf, spamassassin-rules.cf) and Postgrey (whitelist_clients.local,
# whitelist_recipients), each as DMS v15.1.0 and v16 apply them
# (shared/reference/dms-contract.md §1.3, §7; tests/dms-image/README.md).
# Sourced, not run.

# ---------------------------------------------------------------------------
# Rspamd: rspamd/custom-commands.conf
#
# Read at the first start (after the overrides were copied) and again by the
# change detector whenever the file changes, each time on top of what
# /etc/rspamd/override.d/ holds then: DMS does not start from a clean
# directory, so `add-line` appends its line once more on every change, and a
# command removed from the file keeps its effect until the container is
# recreated. A line is split at blanks into the command and three arguments,
# the third taking the rest of the line.
#
#   enable-module M / disable-module M       override.d/M.conf = "enabled = true|false;"
#   set-option-for-module M OPTION VALUE     OPTION = VALUE; in override.d/M.conf
#   set-option-for-controller OPTION VALUE   ... in override.d/worker-controller.inc
#   set-option-for-proxy OPTION VALUE        ... in override.d/worker-proxy.inc
#   set-common-option OPTION VALUE           ... in override.d/options.inc
#   add-line FILE LINE                       LINE appended to override.d/FILE
#
# As in DMS: OPTION is an extended regular expression. When a line of the
# target file matches "OPTION.*=.*", every line that contains OPTION is cut
# after it and given " = VALUE;" (sed, so "&", "\" and "|" in VALUE are not
# taken literally); otherwise "OPTION = VALUE;" is appended. A missing OPTION
# or module VALUE stops DMS's script (bash's ${x:?} in a non-interactive
# shell): the start-up fails, or the change detector exits and watches no more.
# Only the start-up script defines the function DMS's enable-module and
# disable-module call: its change detector fails on them ("command not
# found") and goes on, so they take effect only in a new container. An unknown
# command is skipped with a warning.

readonly DMS_RSPAMD_COMMANDS="${DMS_CONFIG}/rspamd/custom-commands.conf"
readonly DMS_RSPAMD_OVERRIDE_D=/etc/rspamd/override.d

# _rspamd_custom_commands start|change
_rspamd_custom_commands() {
  local when="$1" command arg1 arg2 arg3
  [[ -f "${DMS_RSPAMD_COMMANDS}" ]] || return 0
  _log debug "Applying the Rspamd custom commands of ${DMS_RSPAMD_COMMANDS}"
  while read -r command arg1 arg2 arg3; do
    case "${command}" in
      enable-module | disable-module)
        if [[ "${when}" == change ]]; then
          _log warn "Rspamd custom command '${command} ${arg1}' is not applied by the change detector (as in DMS): it takes effect in a new container"
          continue
        fi
        [[ -n "${arg1}" ]] || _rspamd_command_fatal "${when}" "${command}: the module name is missing"
        _rspamd_module_switch "${arg1}" "$([[ "${command}" == enable-module ]] && echo true || echo false)"
        ;;
      set-option-for-module)
        [[ -n "${arg2}" ]] || _rspamd_command_fatal "${when}" "${command} ${arg1}: the option name is missing"
        [[ -n "${arg3}" ]] || _rspamd_command_fatal "${when}" "${command} ${arg1} ${arg2}: the value is missing"
        _rspamd_set_option "${arg1}.conf" "${arg2}" "${arg3}"
        ;;
      set-option-for-controller | set-option-for-proxy | set-common-option)
        [[ -n "${arg1}" ]] || _rspamd_command_fatal "${when}" "${command}: the option name is missing"
        local target=options.inc value="${arg2} ${arg3}"
        [[ "${command}" == set-option-for-controller ]] && target=worker-controller.inc
        [[ "${command}" == set-option-for-proxy ]] && target=worker-proxy.inc
        # The value is "ARG2 ARG3" less one trailing blank (there when ARG3 is empty).
        _rspamd_set_option "${target}" "${arg1}" "${value% }"
        ;;
      add-line)
        # ARG3 is always set by read: an empty one leaves a trailing blank, as in DMS.
        printf '%s %s\n' "${arg2}" "${arg3}" >>"${DMS_RSPAMD_OVERRIDE_D}/${arg1}" \
          || _log error "Rspamd custom command '${command} ${arg1}': cannot append to ${DMS_RSPAMD_OVERRIDE_D}/${arg1}"
        ;;
      *)
        _log warn "Rspamd custom command '${command}' is invalid"
        ;;
    esac
  done < <(_valid_lines "${DMS_RSPAMD_COMMANDS}")
}

# What stops DMS's script: at start the start-up fails; in the change detector
# the detector exits (its lock stays behind, stale after a minute).
_rspamd_command_fatal() {
  local when="$1" message="$2"
  _log error "Rspamd custom command ${message}"
  if [[ "${when}" == start ]]; then
    _die "Rspamd custom commands of ${DMS_RSPAMD_COMMANDS} stopped the setup"
  fi
  _log error "The change detector stops (as DMS's does here)"
  exit 1
}

_rspamd_module_switch() {
  local module="$1" enabled="$2"
  printf '# Written by dms-test from rspamd/custom-commands.conf.\nenabled = %s;\n' "${enabled}" \
    >"${DMS_RSPAMD_OVERRIDE_D}/${module}.conf" \
    || _log error "Rspamd custom command: cannot write ${DMS_RSPAMD_OVERRIDE_D}/${module}.conf"
}

_rspamd_set_option() {
  local file="${DMS_RSPAMD_OVERRIDE_D}/$1" option="$2" value="$3"
  touch "${file}" || { _log error "Rspamd custom command: cannot write ${file}"; return 0; }
  if grep -qE -- "${option}.*=.*" "${file}" 2>/dev/null; then
    sed -i -E "s|([[:space:]]*${option}).*|\\1 = ${value};|g" "${file}" \
      || _log error "Rspamd custom command: sed could not set '${option}' in ${file}"
  else
    printf '%s = %s;\n' "${option}" "${value}" >>"${file}"
  fi
}

# ---------------------------------------------------------------------------
# Amavis and SpamAssassin (ENABLE_AMAVIS, ENABLE_SPAMASSASSIN), first start
# only. DMS's image ships three Amavis files of its own (49-docker-mailserver,
# 60-dms_default_config, 62-improve_privacy_remove_headers: the stand-ins
# write theirs here) and enables the bypass maps of Debian's
# 15-content_filter_mode, so that the scanners run unless a later file
# bypasses them. 61-dms_auto_generated bypasses SpamAssassin unless it is
# enabled, and ClamAV always (the stand-ins have none). amavis.cf becomes
# 50-user, read after 49 and before 60-62; spamassassin-rules.cf goes to
# /etc/spamassassin/, which SpamAssassin inside Amavis reads.

readonly DMS_AMAVIS_D=/etc/amavis/conf.d

# The switches and their values, with the stand-ins' defaults (DMS enables
# Amavis by default; the stand-ins do not, so that a test opts in), added to
# /etc/dms-settings for the change detector, the health check and supervisord.
_setup_spamfilter_variables() {
  : "${ENABLE_AMAVIS:=0}" "${ENABLE_SPAMASSASSIN:=0}" "${ENABLE_POSTGREY:=0}" "${AMAVIS_LOGLEVEL:=0}"
  : "${SA_TAG:=2.0}" "${SA_TAG2:=6.31}" "${SA_KILL:=10.0}" "${SPAMASSASSIN_SPAM_TO_INBOX:=1}"
  : "${POSTGREY_DELAY:=300}" "${POSTGREY_MAX_AGE:=35}" "${POSTGREY_AUTO_WHITELIST_CLIENTS:=5}"
  : "${POSTGREY_TEXT:=Delayed by Postgrey}"
  local name value
  for name in ENABLE_AMAVIS ENABLE_SPAMASSASSIN ENABLE_POSTGREY AMAVIS_LOGLEVEL SA_TAG SA_TAG2 SA_KILL \
    SPAMASSASSIN_SPAM_TO_INBOX POSTGREY_DELAY POSTGREY_MAX_AGE POSTGREY_AUTO_WHITELIST_CLIENTS POSTGREY_TEXT; do
    value="${!name}"
    printf "%s='%s'\n" "${name}" "${value//\'/\'\\\'\'}"
  done >>"${DMS_SETTINGS}"
}

_setup_spamfilters() {
  _setup_amavis_conf
  _setup_spamassassin
  _setup_amavis
  _setup_postgrey_files
}

_setup_amavis_conf() {
  sed -i -E 's/^#(@|   \\%)bypass/\1bypass/' "${DMS_AMAVIS_D}/15-content_filter_mode"
  cat >"${DMS_AMAVIS_D}/49-docker-mailserver" <<'CONF'
use strict;
# dms-test: DMS's choices; amavis.cf (50-user) is read after this file.
$final_spam_destiny       = D_BOUNCE;
$final_bad_header_destiny = D_BOUNCE;
$log_level = 2;
1;
CONF
  cat >"${DMS_AMAVIS_D}/60-dms_default_config" <<'CONF'
use strict;
# dms-test: the local domains are those of Postfix's virtual mailbox domains.
@local_domains_maps = ( read_hash('/etc/postfix/vhost') );
1;
CONF
  cat >"${DMS_AMAVIS_D}/62-improve_privacy_remove_headers" <<'CONF'
use strict;
# dms-test: no Received header from Amavis, and no scanner name in X-Virus-Scanned.
$allowed_added_header_fields{lc('Received')} = 0;
$X_HEADER_LINE = "Yes";
1;
CONF
  chmod 0644 "${DMS_AMAVIS_D}"/*
}

_setup_spamassassin() {
  local generated="${DMS_AMAVIS_D}/61-dms_auto_generated"
  if ! _enabled "${ENABLE_AMAVIS}" && _enabled "${ENABLE_SPAMASSASSIN}"; then
    _log warn 'Spamassassin does not work when Amavis is disabled. Enable Amavis to fix it.'
    ENABLE_SPAMASSASSIN=0
  fi
  {
    printf '# Written at the first start by dms-test-start.\nuse strict;\n'
    if _enabled "${ENABLE_SPAMASSASSIN}"; then
      _log debug 'Enabling and configuring SpamAssassin'
      sed -i -E \
        -e "s|^\\\$sa_tag_level_deflt .*;|\$sa_tag_level_deflt = ${SA_TAG};|" \
        -e "s|^\\\$sa_tag2_level_deflt .*;|\$sa_tag2_level_deflt = ${SA_TAG2};|" \
        -e "s|^\\\$sa_kill_level_deflt .*;|\$sa_kill_level_deflt = ${SA_KILL};|" \
        -e "s|^\\\$sa_spam_subject_tag .*;|\$sa_spam_subject_tag = undef;|" \
        "${DMS_AMAVIS_D}/20-debian_defaults"
      if [[ -e "${DMS_CONFIG}/spamassassin-rules.cf" ]]; then
        _log info "Applying ${DMS_CONFIG}/spamassassin-rules.cf"
        cp "${DMS_CONFIG}/spamassassin-rules.cf" /etc/spamassassin/
      fi
      local destiny=D_BOUNCE
      _enabled "${SPAMASSASSIN_SPAM_TO_INBOX}" && destiny=D_PASS
      sed -i -E "s/^\\\$(final_spam_destiny|final_bad_header_destiny) .*=.*\$/\$\\1 = ${destiny};/" \
        "${DMS_AMAVIS_D}/49-docker-mailserver"
    else
      printf '@bypass_spam_checks_maps = (1);\n'
    fi
    # No ClamAV in the stand-ins (ENABLE_CLAMAV=0).
    printf '@bypass_virus_checks_maps = (1);\n1;\n'
  } >"${generated}"
  chmod 0444 "${generated}"
}

_setup_amavis() {
  if ! _enabled "${ENABLE_AMAVIS}"; then
    _log debug 'Amavis is disabled'
    return 0
  fi
  _log debug 'Configuring Amavis'
  if [[ -f "${DMS_CONFIG}/amavis.cf" ]]; then
    _log info "Applying ${DMS_CONFIG}/amavis.cf"
    cp "${DMS_CONFIG}/amavis.cf" "${DMS_AMAVIS_D}/50-user"
  fi
  sed -i -E "s/(log_level).*/\\1 = ${AMAVIS_LOGLEVEL};/" "${DMS_AMAVIS_D}/49-docker-mailserver"
  sed -i "s|^#\\\$myhostname = \"mail.example.com\";|\$myhostname = \"${DMS_HOSTNAME}\";|" "${DMS_AMAVIS_D}/05-node_id"
  # The two services of DMS's postfix-amavis.cf: the filter client and the
  # smtpd on 127.0.0.1:10025 that takes the mail back. DMS 16 (Postfix 3.10)
  # writes smtp_dns_support_level where 15.1 wrote disable_dns_lookups.
  local no_dns='disable_dns_lookups=yes'
  _dovecot24 && no_dns='smtp_dns_support_level=disabled'
  cat >>/etc/postfix/master.cf <<CONF

# Amavis (dms-test-start, ENABLE_AMAVIS=1)
smtp-amavis     unix    -       -       n       -       2       smtp
  -o syslog_name=postfix/\$service_name
  -o smtp_data_done_timeout=1200
  -o smtp_send_xforward_command=yes
  -o ${no_dns}
  -o max_use=20
  -o smtp_tls_security_level=none
  -o smtp_tls_wrappermode=no
127.0.0.1:10025 inet    n       -       n       -       -       smtpd
  -o syslog_name=postfix/smtpd-amavis
  -o content_filter=
  -o local_recipient_maps=
  -o relay_recipient_maps=
  -o smtpd_restriction_classes=
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=reject_unauth_pipelining
  -o smtpd_end_of_data_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_error_sleep_time=0
  -o smtpd_soft_error_limit=1001
  -o smtpd_hard_error_limit=1000
  -o smtpd_client_connection_count_limit=0
  -o smtpd_client_connection_rate_limit=0
  -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks,no_milters
  -o smtp_tls_security_level=none
CONF
  _postconf 'content_filter = smtp-amavis:[127.0.0.1]:10024'
}

# ---------------------------------------------------------------------------
# Postgrey (ENABLE_POSTGREY), first start only: the allow lists of the config
# volume are copied to /etc/postgrey/ (Postgrey reads whitelist_clients.local
# beside its own list), and its policy service is appended to
# smtpd_recipient_restrictions (after Dovecot's quota policy). supervisord runs
# it with DMS's options (POSTGREY_DELAY, _MAX_AGE, _AUTO_WHITELIST_CLIENTS,
# _TEXT, from /etc/dms-settings).

_setup_postgrey_files() {
  _enabled "${ENABLE_POSTGREY}" || return 0
  _log debug 'Enabling and configuring Postgrey'
  local name
  for name in whitelist_clients.local whitelist_recipients; do
    if [[ -f "${DMS_CONFIG}/${name}" ]]; then
      _log info "Applying ${DMS_CONFIG}/${name}"
      cp -f "${DMS_CONFIG}/${name}" "/etc/postgrey/${name}"
    fi
  done
}

_setup_postgrey_policy() {
  _enabled "${ENABLE_POSTGREY}" || return 0
  _postconf "smtpd_recipient_restrictions = $(postconf -h smtpd_recipient_restrictions), check_policy_service inet:127.0.0.1:10023"
}
