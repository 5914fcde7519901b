# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The firewall role's plan: the rule model and what each backend needs to reach it.

Everything the role decides is computed here, on the controller, before anything on the host changes:
the rules (port, protocol, accepted IPv4 and IPv6 sources), whether they keep Ansible's own SSH connection,
the nftables table, and the ufw and firewalld changes (against the state read from the host).
"""

from __future__ import annotations

import binascii
import ipaddress

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

ANY4 = '0.0.0.0/0'
ANY6 = '::/0'
PREFIX = 'dms-mailserver'
UFW_COMMENT = PREFIX
UFW_SSH_COMMENT = PREFIX + ' ssh'
NFT_TABLE = 'dms_mailserver'
PROTOS = ('tcp', 'udp')


def _port(value, field):
    if isinstance(value, bool):
        raise AnsibleFilterError('%s: %r is not a port number' % (field, value))
    try:
        port = int(str(value).strip())
    except ValueError:
        raise AnsibleFilterError('%s: %r is not a port number' % (field, value))
    if not 1 <= port <= 65535:
        raise AnsibleFilterError('%s: %d is not a port number (1-65535)' % (field, port))
    return port


def port_key(value, field):
    """``587``, ``'587'``, ``'587/tcp'``, ``'51820/udp'`` -> ``(port, proto)``; TCP when no protocol is given."""
    text = str(value).strip().lower()
    proto = 'tcp'
    if '/' in text:
        text, proto = text.split('/', 1)
        if proto not in PROTOS:
            raise AnsibleFilterError('%s: %r: the protocol must be tcp or udp' % (field, value))
    if isinstance(value, bool):
        raise AnsibleFilterError('%s: %r is not a port number' % (field, value))
    return _port(text, field), proto


def network(value, field):
    """An address or network (``192.0.2.7``, ``198.51.100.0/24``, ``2001:db8::/32``) as an ip_network."""
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise AnsibleFilterError('%s: %r is not an IPv4 or IPv6 address or network (%s)' % (field, value, exc))
        raise AnsibleFilterError('%s: %r has host bits set; the network is %s' % (field, value, loose))


def _sources(values, field, ipv6):
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise AnsibleFilterError('%s: expected a list of addresses or networks, got %r' % (field, values))
    if not values:
        raise AnsibleFilterError('%s: the list is empty; leave the port out to accept it from everywhere' % field)
    nets = []
    for index, value in enumerate(values):
        net = network(value, '%s[%d]' % (field, index))
        if net.version == 6 and not ipv6:
            raise AnsibleFilterError('%s[%d]: %s is an IPv6 network but dms_firewall_ipv6 is false'
                                     % (field, index, net))
        nets.append(net)
    return nets


def service_name(port, proto, ssh=False):
    """The firewalld service the role defines for one port (also the rule's name elsewhere)."""
    name = '%s-%s%d' % (PREFIX, 'ssh-' if ssh else '', port)
    return name if proto == 'tcp' else '%s-%s' % (name, proto)


def build_rules(ports, extra_ports=None, sources=None, ssh_port=22, ssh_sources=None, ipv6=True):
    """The rule list: one item per (port, protocol), sorted, with the sources each family accepts.

    ``v4``/``v6`` list the accepted networks; ``0.0.0.0/0`` and ``::/0`` mean everywhere. With
    ``ipv6`` false a mail or extra port accepts no IPv6 at all; the SSH port always accepts both families
    (within its own source list), so turning IPv6 off never cuts an IPv6 SSH session.
    """
    entries = {}
    if not isinstance(ports, (list, tuple)):
        raise AnsibleFilterError('dms_firewall_ports: expected a list of port numbers, got %r' % (ports,))
    if not isinstance(extra_ports or [], (list, tuple)):
        raise AnsibleFilterError('dms_firewall_extra_ports: expected a list, got %r' % (extra_ports,))
    for index, value in enumerate(ports):
        key = (_port(value, 'dms_firewall_ports[%d]' % index), 'tcp')
        entries.setdefault(key, {'ssh': False, 'open': True})
    for index, value in enumerate(extra_ports or []):
        key = port_key(value, 'dms_firewall_extra_ports[%d]' % index)
        entries.setdefault(key, {'ssh': False, 'open': True})

    ssh_key = (_port(ssh_port, 'dms_firewall_ssh_port'), 'tcp')
    ssh_nets = _sources(ssh_sources, 'dms_firewall_ssh_sources', True) if ssh_sources else None

    restricted = {}
    if not isinstance(sources or {}, dict):
        raise AnsibleFilterError('dms_firewall_sources: expected a dict keyed by port, got %r' % (sources,))
    for raw_key in sorted(sources or {}, key=str):
        field = 'dms_firewall_sources.%s' % raw_key
        key = port_key(raw_key, field)
        if key == ssh_key:
            raise AnsibleFilterError('%s: port %d is the SSH port; restrict it with dms_firewall_ssh_sources'
                                     % (field, key[0]))
        if key not in entries:
            opened = ', '.join('%d/%s' % k for k in sorted(entries)) or 'none'
            raise AnsibleFilterError('%s: %d/%s is not a port the role opens (dms_firewall_ports and '
                                     'dms_firewall_extra_ports: %s)' % (field, key[0], key[1], opened))
        if key in restricted:
            raise AnsibleFilterError('%s: port %d/%s is listed twice' % (field, key[0], key[1]))
        restricted[key] = _sources(sources[raw_key], field, ipv6)

    rules = []
    for key in sorted(set(entries) | {ssh_key}):
        port, proto = key
        purposes = []   # each purpose: None (everywhere) or a list of networks
        if key in entries:
            purposes.append(restricted.get(key))
        is_ssh = key == ssh_key
        if is_ssh:
            purposes.append(ssh_nets)
        if any(p is None for p in purposes):
            v4 = [ANY4]
            v6 = [ANY6] if (ipv6 or is_ssh) else []
        else:
            nets = sorted({n for p in purposes for n in p}, key=lambda n: (n.version, n))
            v4 = [str(n) for n in nets if n.version == 4]
            v6 = [str(n) for n in nets if n.version == 6]
        rules.append({
            'port': port,
            'proto': proto,
            'key': '%d/%s' % key,
            'name': service_name(port, proto, is_ssh),
            'ssh': is_ssh,
            'mail': key in entries,
            'v4': v4,
            'v6': v6,
            'everywhere': v4 == [ANY4] and v6 == [ANY6],
        })
    return rules


def _address(text):
    text = str(text).strip()
    if '%' in text:
        text = text.split('%', 1)[0]
    addr = ipaddress.ip_address(text)
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr


def ssh_connection(text):
    """``SSH_CONNECTION`` (``client_ip client_port server_ip server_port``) -> client and server port."""
    parts = str(text or '').split()
    if len(parts) != 4:
        return {}
    try:
        return {'client': str(_address(parts[0])), 'port': int(parts[3])}
    except ValueError:
        return {}


def lockout(rules, port, client=None):
    """Why the rules would drop a TCP connection from client to port; '' when they keep it."""
    if port is None:
        return ''
    matching = [r for r in rules if r['port'] == int(port) and r['proto'] == 'tcp']
    if not matching:
        return 'the planned rules do not open port %s/tcp at all' % port
    if client is None:
        return ''
    addr = _address(client)
    for rule in matching:
        for net in rule['v4'] + rule['v6']:
            if addr in ipaddress.ip_network(net):
                return ''
    allowed = ', '.join(matching[0]['v4'] + matching[0]['v6']) or 'nowhere'
    return 'the planned rules accept port %s/tcp only from %s, not from %s' % (port, allowed, addr)


# nftables ---------------------------------------------------------------------------------------------------

def _nft_set(nets):
    return nets[0] if len(nets) == 1 else '{ %s }' % ', '.join(nets)


def _nft_accepts(rule, match):
    """Accept statements for one rule after the given match (port match already in it)."""
    lines = []
    if rule['everywhere']:
        return ['%s accept' % match]
    if rule['v4'] == [ANY4]:
        lines.append('meta nfproto ipv4 %s accept' % match)
    elif rule['v4']:
        lines.append('ip saddr %s %s accept' % (_nft_set(rule['v4']), match))
    if rule['v6'] == [ANY6]:
        lines.append('meta nfproto ipv6 %s accept' % match)
    elif rule['v6']:
        lines.append('ip6 saddr %s %s accept' % (_nft_set(rule['v6']), match))
    return lines


def nft_ruleset(rules, input_chain=True, forward_chain=False):
    """The text of the role's nftables table, loaded with ``nft -f`` as one transaction; '' for no table.

    The input chain (nftables backend) is a host firewall: policy drop; established and related traffic,
    loopback and ICMP accepted; then each rule. The forward chain (container engines that publish ports with
    DNAT) drops new connections DNAT'd from a restricted port's original destination unless their source is
    allowed; it accepts everything else, since other tables decide the rest of forwarding.
    """
    chains = []
    if not rules:
        return ''
    if input_chain:
        lines = [
            'type filter hook input priority filter; policy drop;',
            'ct state established,related accept',
            'ct state invalid drop',
            'iif "lo" accept',
            'meta l4proto { icmp, ipv6-icmp } accept',
        ]
        for rule in rules:
            lines.extend('%s comment "%s%s"' % (line, rule['key'], ' ssh' if rule['ssh'] else '')
                         for line in _nft_accepts(rule, '%s dport %d' % (rule['proto'], rule['port'])))
        chains.append(('input', lines))
    if forward_chain:
        lines = []
        for rule in rules:
            if not rule['mail'] or rule['everywhere']:
                continue
            match = 'ct state new ct status dnat meta l4proto %s ct original proto-dst %d' % (
                rule['proto'], rule['port'])
            lines.extend('%s comment "%s published"' % (line, rule['key']) for line in _nft_accepts(rule, match))
            lines.append('%s drop comment "%s published"' % (match, rule['key']))
        if lines:
            chains.append(('forward', ['type filter hook forward priority filter; policy accept;'] + lines))
    if not chains:
        return ''
    out = [
        '#!/usr/sbin/nft -f',
        '# Managed by the dms.mailserver.firewall role: the next run replaces this file.',
        '# nft -f loads it as one transaction: the table is created if missing, deleted, and defined anew.',
        'table inet %s' % NFT_TABLE,
        'delete table inet %s' % NFT_TABLE,
        '',
        'table inet %s {' % NFT_TABLE,
    ]
    for index, (name, lines) in enumerate(chains):
        if index:
            out.append('')
        out.append('\tchain %s {' % name)
        out.extend('\t\t' + line for line in lines)
        out.append('\t}')
    out.append('}')
    return '\n'.join(out) + '\n'


# ufw --------------------------------------------------------------------------------------------------------

def ufw_tuples(text):
    """The rules of ufw's user.rules/user6.rules (their ``### tuple ###`` lines) as dicts."""
    out = []
    for line in str(text or '').splitlines():
        if not line.startswith('### tuple ###'):
            continue
        tokens = line[len('### tuple ###'):].split()
        comment = ''
        if tokens and tokens[-1].startswith('comment='):
            try:
                comment = binascii.unhexlify(tokens.pop()[len('comment='):]).decode('utf-8', 'replace')
            except (binascii.Error, ValueError):
                comment = '?'
        if len(tokens) < 7:
            continue
        out.append({
            'action': tokens[0], 'proto': tokens[1], 'dport': tokens[2], 'dst': tokens[3],
            'sport': tokens[4], 'src': tokens[5], 'direction': tokens[-1],
            'apps': len(tokens) > 7, 'comment': comment,
        })
    return out


def _ufw_spec(tup):
    return (tup['action'], tup['proto'], tup['dport'], tup['src'])


def _ufw_simple(tup):
    """A plain 'allow/deny ... from SRC to any port P' rule (no interface, application or source port)."""
    return (tup['direction'] == 'in' and not tup['apps'] and tup['sport'] == 'any'
            and tup['dst'] in (ANY4, ANY6))


def ufw_plan(rules, tuples, keep_ssh=False, ipv6=True):
    """ufw changes: role rules to delete (no longer wanted) and to add; rules the host already has
    identically under another comment are left alone and not claimed. With ufw's IPV6=no (``ipv6`` false) ufw
    takes no IPv6 rules at all."""
    desired = {}
    for rule in rules:
        comment = UFW_SSH_COMMENT if rule['ssh'] else UFW_COMMENT
        for src in rule['v4'] + (rule['v6'] if ipv6 else []):
            desired[('allow', rule['proto'], str(rule['port']), src)] = comment
    ours = [t for t in tuples if t['comment'] in (UFW_COMMENT, UFW_SSH_COMMENT)]
    foreign = {_ufw_spec(t) for t in tuples if t not in ours and _ufw_simple(t)}
    present = {(_ufw_spec(t), t['comment']) for t in ours}
    delete, add, seen = [], [], set()
    for tup in ours:
        spec = _ufw_spec(tup)
        if spec in desired or spec in seen or (keep_ssh and tup['comment'] == UFW_SSH_COMMENT):
            continue
        seen.add(spec)
        delete.append({'rule': tup['action'], 'proto': tup['proto'], 'from_ip': tup['src'],
                       'to_port': tup['dport'], 'comment': tup['comment']})
    for spec in sorted(desired, key=lambda s: (int(s[2]), s[1], ':' in s[3], s[3])):
        if (spec, desired[spec]) in present or spec in foreign:
            continue
        add.append({'rule': spec[0], 'proto': spec[1], 'from_ip': spec[3], 'to_port': spec[2],
                    'comment': desired[spec]})
    return {'delete': delete, 'add': add}


# firewalld --------------------------------------------------------------------------------------------------

def rich_rule(family, source, service):
    """A rich rule in the exact form firewalld lists it."""
    src = '' if source in (ANY4, ANY6) else ' source address="%s"' % source
    return 'rule family="%s"%s service name="%s" accept' % (family, src, service)


def _ours(name):
    return str(name).startswith(PREFIX + '-')


def firewalld_plan(rules, services=None, rich_rules=None, service_files=None, keep_ssh=False):
    """firewalld changes in one zone: the role's services (one per port, defined in service files) are added
    to the zone when a port accepts everyone; restricted ports get one rich rule per source network."""
    want_services, want_rich, files = [], [], []
    for rule in rules:
        files.append({'name': rule['name'], 'port': rule['port'], 'proto': rule['proto'], 'ssh': rule['ssh']})
        if rule['everywhere']:
            want_services.append(rule['name'])
            continue
        want_rich.extend(rich_rule('ipv4', src, rule['name']) for src in rule['v4'])
        want_rich.extend(rich_rule('ipv6', src, rule['name']) for src in rule['v6'])

    def kept(name):
        return keep_ssh and str(name).startswith(PREFIX + '-ssh-')

    wanted_files = {f['name'] for f in files}
    rich_ours = [r for r in (rich_rules or []) if 'service name="%s-' % PREFIX in r]
    return {
        'service_files': files,
        'services': want_services,
        'rich_rules': want_rich,
        'remove_services': sorted(s for s in (services or []) if _ours(s) and s not in want_services
                                  and not kept(s)),
        'remove_rich_rules': sorted(r for r in rich_ours if r not in want_rich
                                    and not kept(r.split('service name="', 1)[1])),
        'remove_service_files': sorted(f for f in (service_files or []) if _ours(f) and f not in wanted_files
                                       and not kept(f)),
    }


# the plan ---------------------------------------------------------------------------------------------------

def dms_firewall_plan(config):
    """Everything the role applies, from its variables and what it read on the host (see the docs file)."""
    if not isinstance(config, dict):
        raise AnsibleFilterError('dms_firewall_plan: expected a dict')
    state = config.get('state', 'present')
    backend = config.get('backend')
    if state not in ('present', 'absent'):
        raise AnsibleFilterError('dms_firewall_state: %r is not present or absent' % (state,))
    if backend not in ('nftables', 'ufw', 'firewalld'):
        raise AnsibleFilterError('dms_firewall_backend: %r is not nftables, ufw or firewalld' % (backend,))
    engine = config.get('engine') or 'none'
    if engine not in ('docker', 'podman', 'none'):
        raise AnsibleFilterError('dms_firewall_container_engine: %r is not docker, podman or none' % (engine,))
    try:
        ipv6 = boolean(config.get('ipv6', True), strict=True)
    except TypeError:
        raise AnsibleFilterError('dms_firewall_ipv6: %r is not a boolean' % (config.get('ipv6'),))

    conn = ssh_connection(config.get('ssh_connection'))
    fallback_port = config.get('connection_port')
    if conn:
        connection = {'port': conn['port'], 'client': conn['client'], 'source': 'SSH_CONNECTION'}
    elif fallback_port not in (None, ''):
        connection = {'port': _port(fallback_port, 'ansible_port'), 'client': None, 'source': 'ansible_port'}
    else:
        connection = {'port': None, 'client': None, 'source': None}

    ssh_port = config.get('ssh_port', 'auto')
    if ssh_port in (None, '', 'auto'):
        ssh_port = connection['port'] or 22
    ssh_port = _port(ssh_port, 'dms_firewall_ssh_port')

    warnings = []
    if state == 'absent':
        rules = []
        problem = ''
    else:
        rules = build_rules(config.get('ports') or [], config.get('extra_ports'), config.get('sources'),
                            ssh_port, config.get('ssh_sources'), ipv6)
        problem = lockout(rules, connection['port'], connection['client'])
        if problem:
            problem = ('this run would lock Ansible out and was stopped before changing anything: it is connected '
                       'to port %s/tcp from %s (%s), and %s. Keep that port open to that address (dms_firewall_ssh_'
                       'port, dms_firewall_ssh_sources).' % (connection['port'], connection['client'] or 'an '
                                                             'unknown address', connection['source'], problem))
        elif connection['port'] is not None and connection['client'] is None:
            rule = [r for r in rules if r['port'] == connection['port'] and r['proto'] == 'tcp'][0]
            if not rule['everywhere']:
                warnings.append('Ansible connects over port %d/tcp, which is restricted to some sources, and its '
                                'source address is unknown (no SSH_CONNECTION): make sure it is among them'
                                % connection['port'])

    ufw_ipv6 = True
    if backend == 'ufw':
        for line in str(config.get('ufw_defaults') or '').splitlines():
            if line.strip().startswith('IPV6='):
                ufw_ipv6 = line.split('=', 1)[1].strip().strip('"\'').lower() == 'yes'
        if not ufw_ipv6 and state == 'present' and any(r['v6'] for r in rules):
            warnings.append('ufw is set to IPV6=no (/etc/default/ufw), so it does not filter IPv6 at all and takes '
                            'no IPv6 rules: the IPv6 sources of the rules are not applied. Set IPV6=yes there, or '
                            'dms_firewall_ipv6: false if the host has no IPv6.')

    forward = engine != 'none'
    nft = nft_ruleset(rules, input_chain=backend == 'nftables', forward_chain=forward)
    tuples = ufw_tuples(config.get('ufw_rules'))
    return {
        'rules': rules,
        'ssh_port': ssh_port,
        'connection': connection,
        'lockout': problem,
        'warnings': warnings,
        'nft': nft,
        'ufw': ufw_plan(rules, tuples, keep_ssh=state == 'absent', ipv6=ufw_ipv6) if backend == 'ufw' else {},
        'firewalld': firewalld_plan(rules, config.get('firewalld_services'), config.get('firewalld_rich_rules'),
                                    config.get('firewalld_service_files'), keep_ssh=state == 'absent')
        if backend == 'firewalld' else {},
    }


class FilterModule:
    def filters(self):
        return {
            'dms_firewall_plan': dms_firewall_plan,
        }
