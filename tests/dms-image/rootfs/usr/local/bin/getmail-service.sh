#!/usr/bin/env bash
# getmail of the dms-test images, as DMS's getmail service: every GETMAIL_POLL minutes, getmail once per file of
# /etc/getmailrc.d (made at the first start from getmail/*.cf); a GETMAIL_POLL that is not a whole number of at
# least 1, or no file at all, logs an error to syslog and stops the service (supervisorctl stop getmail), which
# leaves the DMS 16 health check unhealthy.
set -uo pipefail

DMS_PROG=getmail-service.sh
# shellcheck source=SCRIPTDIR/../lib/dms-test/lib.sh
source /usr/local/lib/dms-test/lib.sh

readonly GETMAIL_DIR=/var/lib/getmail

# No sleep left behind when supervisord stops or restarts the service.
trap 'pkill --parent $$' EXIT

_syslog_error() {
  logger --priority mail.err --tag getmail "$1"
}

_stop_service() {
  _syslog_error "Stopping service"
  exec supervisorctl stop getmail
}

if [[ ! "${GETMAIL_POLL:-}" =~ ^[0-9]+$ ]] || (( GETMAIL_POLL < 1 )); then
  _syslog_error "Invalid value for GETMAIL_POLL: ${GETMAIL_POLL:-}"
  _stop_service
fi

shopt -s nullglob
while :; do
  rc_file=''
  for rc_file in /etc/getmailrc.d/*; do
    _log debug "Processing ${rc_file}"
    getmail --getmaildir "${GETMAIL_DIR}" --rcfile "${rc_file}"
  done
  if [[ -z "${rc_file}" ]]; then
    _syslog_error 'No configuration found'
    _stop_service
  fi
  sleep "${GETMAIL_POLL}m"
done
