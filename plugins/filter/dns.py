# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The DNS records a group of docker-mailserver hosts needs, as data and as a zone-file style table."""

from __future__ import annotations

import hashlib

from ansible.errors import AnsibleFilterError

TXT_CHUNK = 255

# RFC 6186 / RFC 8314 service records for mail clients, by container port.
CLIENT_SERVICES = (
    (465, '_submissions._tcp'),
    (587, '_submission._tcp'),
    (993, '_imaps._tcp'),
    (143, '_imap._tcp'),
    (995, '_pop3s._tcp'),
    (110, '_pop3._tcp'),
)
PURPOSE_ORDER = ('address', 'mx', 'spf', 'dmarc', 'dkim', 'mta-sts', 'tls-rpt', 'client')
DMARC_POLICIES = ('none', 'quarantine', 'reject')
MTA_STS_MODES = ('testing', 'enforce', 'none')

DEFAULTS = {
    'ttl': 3600,
    'mx_priority': 10,
    'spf': 'v=spf1 mx ~all',
    'dmarc_policy': 'none',
    'dmarc_rua': 'postmaster@{domain}',
    'mta_sts': False,
    'mta_sts_mode': 'testing',
    'mta_sts_max_age': 604800,
    'tls_rpt_rua': 'postmaster@{domain}',
    'client_hints': False,
}


def _chunks(value):
    return [value[i:i + TXT_CHUNK] for i in range(0, len(value), TXT_CHUNK)] or ['']


def _quoted(chunks):
    return ' '.join('"%s"' % c.replace('\\', '\\\\').replace('"', '\\"') for c in chunks)


def _int(value, field, low=0, high=65535):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('%s: %r is not a whole number' % (field, value))
    if not low <= number <= high:
        raise AnsibleFilterError('%s: %d is out of range (%d to %d)' % (field, number, low, high))
    return number


def _bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on')


def _fmt(template, domain, field):
    try:
        return str(template).replace('{domain}', domain)
    except Exception as exc:  # pragma: no cover - str() of a plain value does not fail
        raise AnsibleFilterError('%s: %s' % (field, exc))


class _Plan:
    def __init__(self):
        self.records = {}   # (name, type, rdata) -> record
        self.order = []
        self.notes = []
        self.policies = {}
        self.missing_rua = {}

    def add(self, host, domain, purpose, name, rtype, value, ttl, required=True, **extra):
        name = name.rstrip('.').lower()
        if rtype == 'TXT':
            chunks = _chunks(value)
            rdata = _quoted(chunks)
            extra['chunks'] = chunks
        elif rtype == 'MX':
            rdata = '%d %s.' % (extra['priority'], value)
        elif rtype == 'SRV':
            rdata = '%d %d %d %s.' % (extra['priority'], extra['weight'], extra['port'], value)
        else:
            rdata = value
        key = (name, rtype, rdata)
        if key in self.records:
            record = self.records[key]
            if host not in record['hosts']:
                record['hosts'].append(host)
            return record
        record = dict(domain=domain, purpose=purpose, name=name, type=rtype, value=value, rdata=rdata, ttl=ttl,
                      required=required, hosts=[host])
        record.update(extra)
        self.records[key] = record
        self.order.append(key)
        return record

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)


def _host_options(host):
    opts = dict(DEFAULTS)
    opts.update(dict((k, v) for k, v in (host.get('options') or {}).items() if v is not None))
    name = host['host']
    opts['ttl'] = _int(opts['ttl'], '%s: dms_dns_ttl' % name, 1, 2147483647)
    opts['mx_priority'] = _int(opts['mx_priority'], '%s: dms_dns_mx_priority' % name)
    if opts['dmarc_policy'] not in DMARC_POLICIES:
        raise AnsibleFilterError('%s: dms_dns_dmarc_policy: %r is not one of %s'
                                 % (name, opts['dmarc_policy'], ', '.join(DMARC_POLICIES)))
    if opts['mta_sts_mode'] not in MTA_STS_MODES:
        raise AnsibleFilterError('%s: dms_dns_mta_sts_mode: %r is not one of %s'
                                 % (name, opts['mta_sts_mode'], ', '.join(MTA_STS_MODES)))
    opts['mta_sts_max_age'] = _int(opts['mta_sts_max_age'], '%s: dms_dns_mta_sts_max_age' % name, 0, 31557600)
    opts['mta_sts'] = _bool(opts['mta_sts'])
    opts['client_hints'] = _bool(opts['client_hints'])
    return opts


def _agree(per_domain, domain, what, host, value):
    """Hosts serving one domain must agree on its domain-wide records."""
    seen = per_domain.setdefault((domain, what), (host, value))
    if seen[1] != value:
        raise AnsibleFilterError(
            'the hosts %s and %s both serve %s but disagree on %s (%r and %r); a domain has one %s record, so set '
            'the same value for both' % (seen[0], host, domain, what, seen[1], value, what))


def dms_dns_records(hosts):
    """The DNS records for a list of mail hosts (one dict per inventory host, as the dns playbook collects them).

    Each host dict has ``host`` (inventory name), ``hostname`` (its FQDN), ``domains`` (mail domains it serves),
    ``dkim`` (the records ``dms_dkim`` returns for it), ``ports`` (the container ports it serves) and ``host_ports``
    (``{container_port: host_port}`` overrides),
    ``addresses`` (accounts and alias keys, to check where reports go), ``relays`` (``{domain: relay host}``),
    optional ``ipv4`` / ``ipv6`` lists (AAAA only when ``bind_address`` is an IPv6 address), ``bind_address``
    and ``options`` (``ttl``, ``mx_priority``, ``spf``, ``dmarc_policy``,
    ``dmarc_rua``, ``mta_sts``, ``mta_sts_mode``, ``mta_sts_max_age``, ``tls_rpt_rua``, ``client_hints``).

    Returns ``{'records': [...], 'notes': [...], 'mta_sts_policies': {domain: text}}``. Fails when hosts publish
    different values under one DKIM record name, or disagree on a domain-wide record.
    """
    if not isinstance(hosts, list):
        raise AnsibleFilterError('dms_dns_records: expected a list of host dicts')
    plan = _Plan()
    agreed = {}
    dkim_seen = {}
    mx_by_domain = {}
    for host in hosts:
        if not isinstance(host, dict) or not host.get('host') or not host.get('hostname'):
            raise AnsibleFilterError('dms_dns_records: every host needs "host" and "hostname" (got %r)' % (host,))
        name = host['host']
        hostname = str(host['hostname']).rstrip('.').lower()
        opts = _host_options(host)
        ttl = opts['ttl']
        addresses = set(str(a).lower() for a in host.get('addresses') or [])
        parent = hostname.split('.', 1)[1] if hostname.count('.') >= 2 else hostname
        # The mailserver role publishes on dms_bind_address: an IPv4 one (0.0.0.0 by default) refuses IPv6
        # clients, so an AAAA record would send them to a closed port.
        bind = str(host.get('bind_address') or '0.0.0.0')
        for family, rtype in (('ipv4', 'A'), ('ipv6', 'AAAA')):
            for address in host.get(family) or []:
                if rtype == 'AAAA' and ':' not in bind:
                    plan.note('%s: no AAAA record for %s: the mail server publishes its ports on %s (IPv4 only), '
                              'so IPv6 clients would be refused. Publish on IPv6 as DMS\'s IPv6 page describes '
                              '(an IPv6-enabled container network, so that clients keep their own address), set '
                              'dms_bind_address to an IPv6 address, then add the record' % (name, address, bind))
                    continue
                plan.add(name, parent, 'address', hostname, rtype, str(address), ttl)
                plan.note('PTR: the reverse DNS name of %s should be %s (set by whoever runs the address, often the '
                          'hosting provider), and %s should resolve back to it' % (address, hostname, hostname))
        if not host.get('ipv4'):
            # The MX records name the host, so its A record must exist; without dms_dns_ipv4 it is not listed here.
            plan.note('%s: no A record listed for this name (dms_dns_ipv4 is not set for %s), and the MX records '
                      'point at it: publish %s A <its public IPv4 address> if it is not published yet, or set '
                      'dms_dns_ipv4 to list it here' % (hostname, name, hostname))
        for item in host.get('dkim_unused') or []:
            backend = str(item.get('backend', ''))
            plan.note('%s: no DKIM record for %s (selector %s): its key is for %s, which is off on this host '
                      '(ENABLE_%s), so nothing signs with it'
                      % (name, item.get('domain'), item.get('selector', 'mail'), backend, backend.upper()))
        for domain in sorted(set(str(d).lower() for d in host.get('domains') or [])):
            plan.add(name, domain, 'mx', domain, 'MX', hostname, ttl, priority=opts['mx_priority'])
            mx_by_domain.setdefault(domain, [])
            if hostname not in mx_by_domain[domain]:
                mx_by_domain[domain].append(hostname)

            spf = _fmt(opts['spf'], domain, 'dms_dns_spf')
            _agree(agreed, domain, 'SPF', name, spf)
            if spf:
                plan.add(name, domain, 'spf', domain, 'TXT', spf, ttl)

            rua = _fmt(opts['dmarc_rua'], domain, 'dms_dns_dmarc_rua') if opts['dmarc_rua'] else ''
            dmarc = 'v=DMARC1; p=%s' % opts['dmarc_policy'] + ('; rua=mailto:%s' % rua if rua else '')
            _agree(agreed, domain, 'DMARC', name, dmarc)
            plan.add(name, domain, 'dmarc', '_dmarc.' + domain, 'TXT', dmarc, ttl)
            if rua and rua.endswith('@' + domain) and rua.lower() not in addresses and '@' + domain not in addresses:
                plan.missing_rua.setdefault((domain, rua), []).append(name)

            relay = (host.get('relays') or {}).get(domain)
            if relay:
                plan.note('%s: mail from this domain leaves through the relay %s: add the relay provider\'s SPF '
                          'mechanism (its include:) to the SPF record' % (domain, relay))

            if opts['client_hints']:
                overrides = dict((int(k), int(p)) for k, p in (host.get('host_ports') or {}).items())
                ports = dict((int(p), overrides.get(int(p), int(p))) for p in host.get('ports') or [])
                for container_port, service in CLIENT_SERVICES:
                    if container_port in ports:
                        plan.add(name, domain, 'client', '%s.%s' % (service, domain), 'SRV', hostname, ttl,
                                 required=False, priority=opts['mx_priority'], weight=1,
                                 port=ports[container_port])
                plan.note('%s: the SRV records let mail clients find the servers (RFC 6186); Thunderbird\'s '
                          'autoconfig and Outlook\'s autodiscover need a web service at autoconfig.%s / '
                          'autodiscover.%s in addition' % (domain, domain, domain))

            if opts['mta_sts']:
                _agree(agreed, domain, 'MTA-STS mode', name, (opts['mta_sts_mode'], opts['mta_sts_max_age']))
                tls_rua = (_fmt(opts['tls_rpt_rua'], domain, 'dms_dns_tls_rpt_rua')
                           if opts['tls_rpt_rua'] else '')
                if tls_rua:
                    plan.add(name, domain, 'tls-rpt', '_smtp._tls.' + domain, 'TXT',
                             'v=TLSRPTv1; rua=mailto:%s' % tls_rua, ttl, required=False)

        for record in host.get('dkim') or []:
            domain = str(record.get('domain', '')).lower()
            rname = str(record.get('name', '')).lower()
            value = record.get('value')
            if value is None:
                plan.note('%s: %s has no DKIM key for %s yet (selector %s): run the site playbook, then this one '
                          'again' % (rname, name, domain, record.get('selector')))
                continue
            first = dkim_seen.setdefault(rname, (name, value))
            if first[1] != value:
                raise AnsibleFilterError(
                    'the hosts %s and %s have different DKIM keys under the same record %s; one name can publish '
                    'one key. Share the keys (dms_dkim_shared: true), or give each host its own selector in '
                    'dms_dkim' % (first[0], name, rname))
            plan.add(name, domain, 'dkim', rname, 'TXT', value, ttl, selector=record.get('selector'))

    # MTA-STS needs every MX of the domain in its policy, so it is built once all hosts are known.
    for host in hosts:
        opts = _host_options(host)
        if not opts['mta_sts']:
            continue
        for domain in sorted(set(str(d).lower() for d in host.get('domains') or [])):
            if domain in plan.policies:
                continue
            policy = 'version: STSv1\nmode: %s\n%smax_age: %d\n' % (
                opts['mta_sts_mode'], ''.join('mx: %s\n' % mx for mx in sorted(mx_by_domain[domain])),
                opts['mta_sts_max_age'])
            plan.policies[domain] = policy
            policy_id = hashlib.sha256(policy.encode('utf-8')).hexdigest()[:20]
            plan.add(host['host'], domain, 'mta-sts', '_mta-sts.' + domain, 'TXT', 'v=STSv1; id=%s' % policy_id,
                     opts['ttl'], required=False)
            plan.note('%s: MTA-STS also needs https://mta-sts.%s/.well-known/mta-sts.txt served with a valid '
                      'certificate and the policy in mta_sts_policies (its id changes with the policy)'
                      % (domain, domain))

    for (domain, rua), names in sorted(plan.missing_rua.items()):
        plan.note('%s: DMARC reports go to %s, which is no account or alias on %s: add an alias for it, or set '
                  'dms_dns_dmarc_rua' % (domain, rua, ', '.join(names)))

    def sort_key(key):
        record = plan.records[key]
        return (record['domain'], PURPOSE_ORDER.index(record['purpose']), plan.order.index(key))

    records = [plan.records[key] for key in sorted(plan.order, key=sort_key)]
    notes = sorted(plan.notes, key=lambda note: note.split(':', 1)[0] if not note.startswith('PTR') else '')
    return {'records': records, 'notes': notes, 'mta_sts_policies': plan.policies}


def dms_dns_table(dns):
    """The records of :func:`dms_dns_records` as zone-file lines grouped by domain, then the notes."""
    if isinstance(dns, dict):
        records, notes, policies = dns.get('records') or [], dns.get('notes') or [], dns.get('mta_sts_policies') or {}
    elif isinstance(dns, list):
        records, notes, policies = dns, [], {}
    else:
        raise AnsibleFilterError('dms_dns_table: expected the result of dms_dns_records')
    width = max([len(r['name']) + 1 for r in records] + [24])
    lines = []
    domain = None
    for record in records:
        if record['domain'] != domain:
            domain = record['domain']
            if lines:
                lines.append('')
            lines.append('; %s' % domain)
        optional = '' if record['required'] else '   ; optional'
        lines.append('%-*s %6s IN %-5s %s%s' % (width, record['name'] + '.', record['ttl'], record['type'],
                                                record['rdata'], optional))
    for dom in sorted(policies):
        lines.append('')
        lines.append('; MTA-STS policy for https://mta-sts.%s/.well-known/mta-sts.txt' % dom)
        lines.extend('; | %s' % line for line in policies[dom].splitlines())
    if notes:
        lines.append('')
        lines.append('; notes')
        lines.extend('; - %s' % note for note in notes)
    return '\n'.join(lines) + '\n'


class FilterModule:
    def filters(self):
        return {
            'dms_dns_records': dms_dns_records,
            'dms_dns_table': dms_dns_table,
        }
