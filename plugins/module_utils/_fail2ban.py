# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Fail2ban in a running DMS container: ban, unban and query through ``fail2ban-client``.

Everything runs as argv lists through the container engine's ``exec`` (``docker exec`` or ``podman exec``); no
shell is involved, on the host or in the container.  The ban logic is separate from the engine, so that it can be
tested with a simulated ``fail2ban-client`` (:class:`Fail2ban` takes any ``run(argv) -> (rc, out, err)``).

What DMS does (``target/bin/fail2ban``): ``setup fail2ban ban <ip>`` bans in the jail ``custom``; ``unban`` asks
every jail to unban the address.  ``fail2ban-client set <jail> banip`` bans an address even when the jail's
``ignoreip`` covers it, and accepts any text as an address; this module refuses both.
"""

from __future__ import annotations

import ast
import ipaddress
import re

DEFAULT_JAIL = 'custom'
JAIL_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,63}')


class Fail2banError(Exception):
    """A refusal or a failure, with a message for the user."""


# ----------------------------------------------------------------------------------------------------------------
# Input

def parse_ip(text, field='ip'):
    """An IPv4/IPv6 address or CIDR network: the ``ipaddress`` network, or Fail2banError naming ``field``.

    Host bits in a CIDR (``192.0.2.1/24``) are refused: the user meant an address or the network, and banning one
    for the other would block too much or too little.
    """
    if not isinstance(text, str) or not text.strip():
        raise Fail2banError('%s: an IPv4 or IPv6 address or CIDR network is required' % field)
    value = text.strip()
    if value != text or any(c.isspace() or ord(c) < 32 for c in value):
        raise Fail2banError('%s: %r must not contain white space or control characters' % (field, text))
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise Fail2banError('%s: %r is not an IPv4 or IPv6 address or CIDR network (%s)' % (field, text, exc))
    if '%' in value:
        raise Fail2banError('%s: %r: a scoped IPv6 address cannot be banned' % (field, text))
    return network


def text_of(network):
    """How an address or network is given to Fail2ban: an address without ``/32`` or ``/128``."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return network.with_prefixlen


def check_jail(name, field='jail'):
    if not isinstance(name, str) or not JAIL_NAME.fullmatch(name):
        raise Fail2banError('%s: %r is not a Fail2ban jail name (letters, digits, ".", "_", "-")' % (field, name))
    return name


def networks(items, field):
    """Parsed, de-duplicated networks of a list option, in the given order."""
    out = []
    for index, item in enumerate(items or ()):
        network = parse_ip(item, '%s[%d]' % (field, index))
        if network not in out:
            out.append(network)
    return out


# ----------------------------------------------------------------------------------------------------------------
# fail2ban-client output

def parse_banned(text):
    """``fail2ban-client banned``: ``[{'jail': ['ip', ...]}, ...]`` → ``{jail: [ip, ...]}`` (Fail2ban 1.0+)."""
    try:
        data = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as exc:
        raise Fail2banError('cannot read the output of fail2ban-client banned: %s' % exc)
    if isinstance(data, dict):
        data = [data]
    out = {}
    if not isinstance(data, (list, tuple)):
        raise Fail2banError('cannot read the output of fail2ban-client banned: %r' % (text[:200],))
    for entry in data:
        if not isinstance(entry, dict):
            raise Fail2banError('cannot read the output of fail2ban-client banned: %r' % (text[:200],))
        for jail, ips in entry.items():
            out[str(jail)] = [str(ip) for ip in ips or ()]
    return out


def parse_ignoreip(text):
    """``fail2ban-client get <jail> ignoreip``: the entries listed after ``|-`` and ```-``."""
    out = []
    for line in text.splitlines():
        match = re.match(r'^\s*[|`]-\s*(\S+)\s*$', line)
        if match:
            out.append(match.group(1))
    return out


def as_network(text):
    """A listed address or network as ``ipaddress`` network, or None (a host name, or anything else)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def overlaps(network, others):
    """The members of ``others`` (texts) whose network overlaps ``network``."""
    found = []
    for other in others:
        parsed = other if isinstance(other, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else as_network(other)
        if parsed is not None and parsed.version == network.version and parsed.overlaps(network):
            found.append(other if isinstance(other, str) else text_of(other))
    return found


def listed_as(network, listed):
    """The entry of a banned list that is exactly ``network`` (Fail2ban may list it in its own spelling)."""
    for text in listed:
        if as_network(text) == network:
            return text
    return None


def ssh_client_address(environ):
    """The controller's address as the managed host sees it: the first field of ``SSH_CONNECTION``."""
    value = (environ or {}).get('SSH_CONNECTION') or ''
    fields = value.split()
    if fields:
        network = as_network(fields[0])
        if network is not None:
            return network
    return None


# ----------------------------------------------------------------------------------------------------------------
# The container

class Fail2ban:
    """``fail2ban-client`` in the container; ``run(argv)`` runs argv in it and returns ``(rc, out, err)``."""

    def __init__(self, run, container='the container'):
        self._run = run
        self.container = container

    def client(self, *args):
        rc, out, err = self._run(['fail2ban-client'] + list(args))
        return rc, out or '', err or ''

    def require_running(self, enabled):
        """Refuse unless Fail2ban is enabled (``enabled``: the container's ENABLE_FAIL2BAN) and answers ping."""
        if enabled is not None and enabled.strip() != '1':
            raise Fail2banError('Fail2ban is not enabled in %s: ENABLE_FAIL2BAN is %s, not 1 (DMS needs '
                                'ENABLE_FAIL2BAN=1 and the NET_ADMIN capability)'
                                % (self.container, repr(enabled.strip()) if enabled.strip() else 'not set'))
        rc, out, err = self.client('ping')
        if rc != 0 or 'pong' not in out:
            raise Fail2banError('Fail2ban is not running in %s: fail2ban-client ping failed (%s)'
                                % (self.container, _short(err or out) or 'rc=%d' % rc))

    def banned(self):
        rc, out, err = self.client('banned')
        if rc != 0:
            raise Fail2banError('fail2ban-client banned failed in %s: %s' % (self.container, _short(err or out)))
        return parse_banned(out)

    def ignoreip(self, jail):
        rc, out, err = self.client('get', jail, 'ignoreip')
        if rc != 0:
            raise Fail2banError('fail2ban-client get %s ignoreip failed in %s: %s'
                                % (jail, self.container, _short(err or out)))
        return parse_ignoreip(out)

    def ban(self, jail, texts):
        rc, out, err = self.client('set', jail, 'banip', *texts)
        if rc != 0:
            raise Fail2banError('fail2ban-client set %s banip failed in %s: %s'
                                % (jail, self.container, _short(err or out)))

    def unban(self, jail, text):
        rc, out, err = self.client('set', jail, 'unbanip', text)
        if rc != 0:
            raise Fail2banError('fail2ban-client set %s unbanip failed in %s: %s'
                                % (jail, self.container, _short(err or out)))


def _short(text):
    lines = [line.strip() for line in (text or '').strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ''


def summary(banned):
    """The query result: jails, banned addresses per jail, counts per jail and the number of distinct addresses."""
    jails = sorted(banned)
    totals = dict((jail, len(banned[jail])) for jail in jails)
    distinct = set()
    for jail in jails:
        distinct.update(banned[jail])
    return {'jails': jails, 'banned': dict((jail, list(banned[jail])) for jail in jails),
            'totals': totals, 'total': len(distinct)}


def diff_text(banned):
    return ''.join('%s: %s\n' % (jail, ' '.join(banned[jail])) for jail in sorted(banned))


def plan_and_apply(f2b, state, ips, jail, check_mode, protect=(), controller=None):
    """Ban or unban ``ips`` (networks) in the container, or only query it.

    Returns ``(result, warnings)``.  ``result`` has ``changed``, ``actions`` (``{action, jail, ip}`` done or, in
    check mode, to do), the query data after the run, and ``diff`` texts.  Refusals raise Fail2banError before
    anything changes.
    """
    warnings = []
    before = f2b.banned()
    jails = sorted(before)
    if jail is not None and jail not in before:
        raise Fail2banError('jail: %r is not a jail of the Fail2ban in %s; its jails: %s'
                            % (jail, f2b.container, ', '.join(jails) or 'none'))
    actions = []
    if state == 'banned':
        ignored = f2b.ignoreip(jail)
        for network in ips:
            hit = overlaps(network, ignored)
            if hit:
                raise Fail2banError('ip: %s is in the ignoreip of jail %s (%s): Fail2ban must never ban it, and '
                                    'nothing was banned' % (text_of(network), jail, ', '.join(hit)))
            names = [entry for entry in ignored if as_network(entry) is None]
            if names:
                warnings.append('jail %s ignores host names (%s) that the module does not resolve; make sure %s is '
                                'not one of their addresses' % (jail, ', '.join(names), text_of(network)))
            hit = overlaps(network, protect)
            if hit:
                warnings.append('%s covers a protected address (%s): banning it may lock out SSH access to the '
                                'host' % (text_of(network), ', '.join(hit)))
            if controller is not None and overlaps(network, [controller]):
                warnings.append('%s covers %s, the address this run connects from as the host sees it '
                                '(SSH_CONNECTION): its mail connections to the server are blocked'
                                % (text_of(network), text_of(controller)))
            if listed_as(network, before[jail]) is None:
                actions.append({'action': 'ban', 'jail': jail, 'ip': text_of(network)})
    elif state == 'unbanned':
        targets = [jail] if jail is not None else jails
        for network in ips:
            for name in targets:
                listed = listed_as(network, before[name])
                if listed is not None:
                    actions.append({'action': 'unban', 'jail': name, 'ip': listed})
                else:
                    wider = [entry for entry in before[name]
                             if as_network(entry) is not None and as_network(entry) != network
                             and overlaps(network, [entry])]
                    if wider:
                        warnings.append('%s stays blocked by jail %s: it bans %s; unban that to let it connect'
                                        % (text_of(network), name, ', '.join(wider)))
    after = before
    if actions and not check_mode:
        to_ban = [a['ip'] for a in actions if a['action'] == 'ban']
        if to_ban:
            f2b.ban(jail, to_ban)
        for action in actions:
            if action['action'] == 'unban':
                f2b.unban(action['jail'], action['ip'])
        after = f2b.banned()
        missing = [a for a in actions
                   if (listed_as(as_network(a['ip']), after.get(a['jail'], ())) is None) == (a['action'] == 'ban')]
        if missing:
            raise Fail2banError('Fail2ban in %s did not %s' % (f2b.container, '; '.join(
                '%s %s in jail %s' % (a['action'], a['ip'], a['jail']) for a in missing)))
        changed = after != before
    else:
        changed = bool(actions)
        if actions:
            after = dict((name, list(ips_)) for name, ips_ in before.items())
            for action in actions:
                if action['action'] == 'ban':
                    after[action['jail']].append(action['ip'])
                else:
                    after[action['jail']].remove(action['ip'])
    result = summary(after)
    result.update(changed=changed, actions=actions,
                  diff={'before_header': 'fail2ban (%s)' % f2b.container, 'after_header': 'fail2ban (%s)' % f2b.container,
                        'before': diff_text(before), 'after': diff_text(after)})
    return result, warnings


# ----------------------------------------------------------------------------------------------------------------
# The engine (docker or podman CLI on the managed host)

class Engine:
    """``docker``/``podman`` on the managed host, run with argv lists through ``module.run_command``."""

    def __init__(self, module, engine, container):
        self.module = module
        self.container = container
        self.binary = module.get_bin_path(engine)
        if not self.binary:
            raise Fail2banError('engine: %s is not installed on the managed host (the module runs %s exec there)'
                                % (engine, engine))

    def _cmd(self, args):
        return self.module.run_command([self.binary] + list(args), environ_update={'LC_ALL': 'C'})

    def require_running(self):
        rc, out, err = self._cmd(['inspect', '--format', '{{.State.Running}}', self.container])
        if rc != 0:
            raise Fail2banError('container: %s does not exist (%s inspect: %s)'
                                % (self.container, self.binary.rsplit('/', 1)[-1], _short(err or out)))
        if out.strip() != 'true':
            raise Fail2banError('container: %s is not running' % self.container)

    def env(self, name):
        """A variable of the container's environment as the container sees it; None when unset."""
        rc, out, dummy = self._cmd(['exec', self.container, 'printenv', name])
        return out.rstrip('\n') if rc == 0 else ''

    def run(self, argv):
        return self._cmd(['exec', self.container] + list(argv))

    def net_admin(self):
        """Whether the container's processes have CAP_NET_ADMIN (bit 12 of CapEff of its PID 1), which nftables
        needs for Fail2ban's rules; None when that cannot be read."""
        rc, out, dummy = self._cmd(['exec', self.container, 'grep', '^CapEff:', '/proc/1/status'])
        return cap_net_admin(out) if rc == 0 else None


CAP_NET_ADMIN = 12
NO_NET_ADMIN = ('%s lacks the NET_ADMIN capability: Fail2ban lists bans there, but nftables refuses their rules and '
                'nothing is blocked (give the container cap_add: [NET_ADMIN], as DMS documents)')


def cap_net_admin(status):
    """CAP_NET_ADMIN from a ``CapEff:`` line of /proc/<pid>/status (hex mask); None when there is none."""
    for line in (status or '').splitlines():
        name, dummy, value = line.partition(':')
        if name.strip() == 'CapEff':
            try:
                return bool(int(value.strip(), 16) >> CAP_NET_ADMIN & 1)
            except ValueError:
                return None
    return None
