# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters shared by the mailserver and firewall roles, so both read DMS's switches the same way."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def _flag(env, name):
    """DMS's switches are 0/1 (also accepted: true/false, yes/no); None when not set."""
    if name not in env or env[name] is None or str(env[name]).strip() == '':
        return None
    value = str(env[name]).strip().lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise AnsibleFilterError('dms_env.%s: %r is not a switch value (use 0 or 1)' % (name, env[name]))


def dms_mail_ports(env):
    """The container ports DMS serves for an environment, as published by the mailserver role.

    25, 465 and 587 always; 143 and 993 unless IMAP is off (ENABLE_IMAP=0, DMS's
    default is 1) or SMTP_ONLY=1; 110 and 995 with ENABLE_POP3=1; 4190 with
    ENABLE_MANAGESIEVE=1.
    """
    env = env or {}
    if not isinstance(env, dict):
        raise AnsibleFilterError('dms_mail_ports: expected the DMS environment as a dict')
    smtp_only = _flag(env, 'SMTP_ONLY') is True
    ports = [25, 465, 587]
    imap = _flag(env, 'ENABLE_IMAP')
    if not smtp_only and imap is not False:
        ports.extend([143, 993])
    if not smtp_only and _flag(env, 'ENABLE_POP3'):
        ports.extend([110, 995])
    if not smtp_only and _flag(env, 'ENABLE_MANAGESIEVE'):
        ports.append(4190)
    return sorted(ports)


# Values DMS accepts for the variables it checks at start; anything else stops the container (a panic) or,
# for PERMIT_DOCKER, silently trusts no network. Keyed by variable: (allowed values, what DMS does otherwise).
_ENV_CHOICES = {
    'ACCOUNT_PROVISIONER': (('FILE', 'LDAP'), 'DMS stops at start (OIDC is not implemented in DMS)'),
    'SSL_TYPE': (('', 'letsencrypt', 'manual', 'custom', 'self-signed', 'snakeoil'), 'DMS stops at start'),
    'PERMIT_DOCKER': (('none', 'container', 'host', 'network', 'connected-networks'),
                      'DMS warns and trusts no network'),
    'DOVECOT_INET_PROTOCOLS': (('all', 'ipv4', 'ipv6'), 'DMS stops at start'),
    'LOGROTATE_INTERVAL': (('daily', 'weekly', 'monthly'), 'DMS stops at start'),
}


def dms_env_refusals(env):
    """Values of the DMS environment that DMS itself rejects, as messages naming the variable (values of these
    variables are not secrets)."""
    out = []
    env = env or {}
    for key, (allowed, effect) in sorted(_ENV_CHOICES.items()):
        if key not in env or env[key] is None:
            continue
        value = str(env[key])
        if value not in allowed:
            out.append('dms_env.%s: %r is not one of %s (%s)'
                       % (key, value, ', '.join(repr(a) for a in allowed), effect))
    if 'LOGROTATE_COUNT' in env and env['LOGROTATE_COUNT'] is not None \
            and not str(env['LOGROTATE_COUNT']).isdigit():
        out.append('dms_env.LOGROTATE_COUNT: %r is not a whole number (DMS stops at start)' % (env['LOGROTATE_COUNT'],))
    return out


def dms_env_problems(env):
    """What an env file cannot carry, as messages naming the keys (never the values, which may be secrets)."""
    problems = []
    for key in sorted(env or {}, key=str):
        if not isinstance(key, str) or not key or key[0].isdigit() or \
                not all(c.isalnum() or c == '_' for c in key):
            problems.append('dms_env: %r is not a valid environment variable name' % (key,))
            continue
        value = env[key]
        if isinstance(value, str) and any(c in value for c in '\r\n\x00'):
            problems.append('dms_env.%s: the value contains a line break or NUL byte, which an env file cannot '
                            'carry' % key)
    return problems


def dms_env_strings(env):
    """The environment with every value as the string DMS reads: booleans 1/0, None empty.

    Fails on invalid names and on values an env file cannot carry (line breaks, NUL).
    """
    out = {}
    for key in sorted(env or {}):
        value = env[key]
        if value is None:
            value = ''
        if isinstance(value, bool):
            value = '1' if value else '0'
        value = str(value)
        if not key or not all(c.isalnum() or c == '_' for c in key) or key[0].isdigit():
            raise AnsibleFilterError('dms_env: %r is not a valid environment variable name' % key)
        if '\n' in value or '\r' in value or '\x00' in value:
            raise AnsibleFilterError('dms_env.%s: the value contains a line break or NUL byte, which an env file '
                                     'cannot carry' % key)
        out[key] = value
    return out


def dms_env_file(env):
    """The text of mailserver.env: KEY=VALUE lines, sorted, values literal (no quotes, no substitution)."""
    strings = dms_env_strings(env)
    return ''.join('%s=%s\n' % (key, strings[key]) for key in sorted(strings))


def dms_port_mapping(port, bind_address='0.0.0.0', host_ports=None):
    """``bind:host_port:container_port`` for publishing one DMS port (IPv6 binds in brackets)."""
    host_ports = host_ports or {}
    host_port = host_ports.get(port, host_ports.get(str(port), port))
    bind = str(bind_address or '')
    if ':' in bind and not bind.startswith('['):
        bind = '[%s]' % bind
    if bind:
        return '%s:%s:%s' % (bind, host_port, port)
    return '%s:%s' % (host_port, port)


def dms_host_port_list(ports, host_ports=None):
    """The host-side ports for container ports, with the same overrides dms_port_mapping applies; sorted."""
    host_ports = host_ports or {}
    if not isinstance(host_ports, dict):
        raise AnsibleFilterError('dms_host_ports: expected a dict keyed by container port')
    return sorted(int(host_ports.get(port, host_ports.get(str(port), port))) for port in ports or [])


def dms_summary(result):
    """The non-secret part of a dms_* module result: what was created, updated, removed."""
    result = result or {}
    if result.get('skipped'):
        return 'skipped'
    return dict((key, result.get(key, [])) for key in ('created', 'updated', 'removed'))


class FilterModule:
    def filters(self):
        return {
            'dms_mail_ports': dms_mail_ports,
            'dms_env_file': dms_env_file,
            'dms_env_strings': dms_env_strings,
            'dms_env_problems': dms_env_problems,
            'dms_env_refusals': dms_env_refusals,
            'dms_summary': dms_summary,
            'dms_port_mapping': dms_port_mapping,
            'dms_host_port_list': dms_host_port_list,
        }
