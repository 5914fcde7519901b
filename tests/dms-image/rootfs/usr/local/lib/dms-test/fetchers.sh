#!/usr/bin/env bash
# fetchmail and getmail of the dms-test images, as DMS sets them up at the first start of a container
# (setup.d/fetchmail.sh, setup.d/getmail.sh) and starts them. Sourced by dms-test-start, not run. Nothing here
# runs again on a restart or when the config volume changes: DMS reads fetchmail.cf and getmail/*.cf only at
# the first start.

# /etc/fetchmailrc: DMS's general options, then fetchmail.cf of the config volume as it is; fetchmail:root 0700.
_setup_fetchmail() {
  _enabled "${ENABLE_FETCHMAIL}" || return 0
  _log debug "Enabling and configuring Fetchmail"
  if [[ -f "${DMS_CONFIG}/fetchmail.cf" ]]; then
    cat /etc/fetchmailrc_general "${DMS_CONFIG}/fetchmail.cf" >/etc/fetchmailrc
  else
    cat /etc/fetchmailrc_general >/etc/fetchmailrc
  fi
  chmod 700 /etc/fetchmailrc
  chown fetchmail:root /etc/fetchmailrc
  mkdir -p /var/run/fetchmail /var/lib/fetchmail
  chown fetchmail /var/run/fetchmail /var/lib/fetchmail
}

# FETCHMAIL_PARALLEL=1: /etc/fetchmailrc split into /etc/fetchmailrc.d/fetchmail-N.rc at every data line that
# contains "poll" (anywhere in the line, as DMS's split does), the lines before the first one prepended to each,
# and one supervisord program fetchmail-N per file.
_setup_fetchmail_parallel() {
  _enabled "${FETCHMAIL_PARALLEL}" || return 0
  _log debug "Enabling and configuring Fetchmail parallel"
  local dir=/etc/fetchmailrc.d counter=0 server=0 line rc
  mkdir -p "${dir}"
  : >"${dir}/defaults"
  while read -r line; do
    if [[ "${line}" =~ poll ]]; then
      server=1
      counter=$((counter + 1))
      cat "${dir}/defaults" >"${dir}/fetchmail-${counter}.rc"
      echo "${line}" >>"${dir}/fetchmail-${counter}.rc"
    elif (( server == 0 )); then
      echo "${line}" >>"${dir}/defaults"
    else
      echo "${line}" >>"${dir}/fetchmail-${counter}.rc"
    fi
  done < <(_valid_lines /etc/fetchmailrc)
  rm -f "${dir}/defaults"

  counter=0
  for rc in "${dir}"/fetchmail-*.rc; do
    [[ -e "${rc}" ]] || continue
    counter=$((counter + 1))
    cat >"/etc/supervisor/conf.d/fetchmail-${counter}.conf" <<CONF
[program:fetchmail-${counter}]
startsecs=0
autostart=false
autorestart=true
stdout_logfile=/var/log/supervisor/%(program_name)s.log
stderr_logfile=/var/log/supervisor/%(program_name)s.log
user=fetchmail
command=/usr/bin/fetchmail --fetchmailrc ${rc} --verbose --nodetach --daemon %(ENV_FETCHMAIL_POLL)s --idfile /var/lib/fetchmail/.fetchmail-UIDL-cache --pidfile /var/run/fetchmail/%(program_name)s.pid
CONF
    chmod 700 "${rc}"
    chown fetchmail:root "${rc}"
  done
  supervisorctl reread >/dev/null
  supervisorctl update >/dev/null
}

# /etc/getmailrc.d/<id> for each getmail/<id>.cf (except getmailrc_general.cf, which replaces the base options):
# base options, then the file; the directory chmod -R 600.
_setup_getmail() {
  _enabled "${ENABLE_GETMAIL}" || return 0
  _log debug "Preparing Getmail configuration"
  local file id
  mkdir -p /etc/getmailrc.d
  if [[ -f "${DMS_CONFIG}/getmail/getmailrc_general.cf" ]]; then
    _log debug "Custom 'getmailrc_general.cf' found"
    cp "${DMS_CONFIG}/getmail/getmailrc_general.cf" /etc/getmailrc_general
  fi
  for file in "${DMS_CONFIG}"/getmail/*.cf; do
    [[ -e "${file}" ]] || continue
    if [[ "${file}" =~ /getmail/(.+)\.cf ]] && [[ "${file}" != "${DMS_CONFIG}/getmail/getmailrc_general.cf" ]]; then
      id="${BASH_REMATCH[1]}"
      _log debug "Processing getmail config '${id}'"
      cat /etc/getmailrc_general "${file}" >"/etc/getmailrc.d/${id}"
    fi
  done
  chmod -R 600 /etc/getmailrc.d
  mkdir -p /var/lib/getmail
}

_start_fetchers() {
  local rc counter=0
  if _enabled "${ENABLE_FETCHMAIL}"; then
    if _enabled "${FETCHMAIL_PARALLEL}"; then
      for rc in /etc/fetchmailrc.d/fetchmail-*.rc; do
        [[ -e "${rc}" ]] || continue
        counter=$((counter + 1))
        _start_daemon "fetchmail-${counter}"
      done
    else
      _start_daemon fetchmail
    fi
  fi
  _enabled "${ENABLE_GETMAIL}" && _start_daemon getmail
  return 0
}
