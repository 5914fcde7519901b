# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the report playbook: a host's summary of a dms_info result, its table row, the Markdown report."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DRIFT_KINDS = ('missing', 'extra', 'different')


def _size(kib):
    """KiB as DMS's ``setup email list`` shows sizes (numfmt --to=iec of the bytes), '~' for none."""
    if kib is None:
        return '~'
    value = float(kib) * 1024
    for unit in ('', 'K', 'M', 'G', 'T'):
        if value < 1024 or unit == 'T':
            if unit == '':
                return '%d' % value
            # numfmt rounds away from zero, to one decimal below 10.
            if value < 10:
                tenths = -(-value * 10 // 1)
                if tenths < 100:
                    return '%.1f%s' % (tenths / 10, unit)
                value = 10
            return '%d%s' % (-(-value // 1), unit)
        value /= 1024
    return '~'


def dms_report_summary(info, host):
    """The report's view of one host: counts, drift counts per section, live data, and the dms_info result."""
    if not isinstance(info, dict):
        raise AnsibleFilterError('dms_report_summary: expected a registered dms_info result')
    live = info.get('live') or {}
    detector = live.get('change_detector') or {}
    drift = info.get('drift') or {}
    return {
        'host': host,
        'accounts': len(info.get('accounts') or []),
        'aliases': len(info.get('aliases') or []),
        'relays': len(info.get('relays') or []),
        'dkim': len(info.get('dkim') or []),
        'masters': len(info.get('masters') or []),
        'sieve': len([s for s in info.get('sieve') or [] if not s.get('neutral')]),
        'fetches': len(info.get('fetches') or []),
        'in_sync': info.get('in_sync'),
        'drift': dict((name, sum(len(d.get(kind) or []) for kind in DRIFT_KINDS)) for name, d in drift.items()),
        'dms_release': live.get('dms_release'),
        'applied': detector.get('applied'),
        'pending': detector.get('pending') or [],
        'info': dict((k, v) for k, v in info.items() if k not in ('changed', 'failed', 'invocation')),
    }


def _yes(value):
    return '-' if value is None else ('yes' if value else 'no')


def dms_report_row(summary):
    """One line of the printed table."""
    return '%-24s %8s %7s %6s %4s %-8s %-18s %s' % (
        summary['host'][:24], summary['accounts'], summary['aliases'], summary['relays'], summary['dkim'],
        _yes(summary['in_sync']), summary['dms_release'] or '-',
        _yes(summary['applied']) + ((' (pending: %s)' % ', '.join(summary['pending'])) if summary['pending'] else ''))


def _cell(value):
    return str(value).replace('|', '\\|').replace('\n', ' ')


def _drift_lines(drift):
    out = []
    for section, found in drift.items():
        for kind in DRIFT_KINDS:
            for item in found.get(kind) or []:
                if isinstance(item, dict):
                    fields = item.get('fields')
                    name = ' '.join(str(item[k]) for k in item if k != 'fields')
                    out.append('- %s %s: `%s`%s' % (section, kind, name, (' (%s)' % ', '.join(fields)) if fields else ''))
                else:
                    out.append('- %s %s: `%s`' % (section, kind, item))
    return out


def dms_report_markdown(summaries):
    """The Markdown report of all hosts: a summary table, then per host its accounts, aliases, relays, DKIM keys,
    master users, Sieve scripts, fetched mailboxes and drift."""
    if not isinstance(summaries, list):
        raise AnsibleFilterError('dms_report_markdown: expected the list of the hosts\' dms_report_host')
    lines = ['# Mail server report', '',
             '| host | accounts | aliases | relays | DKIM keys | in sync | DMS | files applied |',
             '|---|---:|---:|---:|---:|---|---|---|']
    for s in summaries:
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
            _cell(s['host']), s['accounts'], s['aliases'], s['relays'], s['dkim'], _yes(s['in_sync']),
            _cell(s['dms_release'] or '-'),
            _yes(s['applied']) + ((' (pending: %s)' % ', '.join(s['pending'])) if s['pending'] else '')))
    for s in summaries:
        info = s['info']
        lines += ['', '## %s' % s['host'], '']
        if info.get('accounts') is not None:
            lines += ['### Accounts', '', '| address | quota | used | messages | restrictions | aliases |',
                      '|---|---|---|---:|---|---|']
            for a in info['accounts']:
                usage = a.get('usage') or {}
                used = '-'
                if usage:
                    used = '%s / %s [%s%%]' % (_size(usage.get('used_kib')), _size(usage.get('limit_kib')),
                                               usage.get('percent'))
                lines.append('| %s | %s | %s | %s | %s | %s |' % (
                    _cell(a['address']), _cell(a.get('quota') or '-'), used,
                    usage.get('messages', '-') if usage else '-', ', '.join(a.get('restrict') or []) or '-',
                    _cell(', '.join(a.get('aliases') or []) or '-')))
        if info.get('aliases'):
            lines += ['', '### Aliases', '', '| type | alias | recipients | note |', '|---|---|---|---|']
            for a in info['aliases']:
                note = 'catch-all' if a.get('catch_all') else ('self-alias' if a.get('self_alias') else '')
                lines.append('| %s | `%s` | %s | %s |'
                             % (a['type'], _cell(a['alias']), _cell(', '.join(a['recipients'])), note))
        if info.get('relays'):
            lines += ['', '### Relays', '', '| key | relay host | credentials | opted out |', '|---|---|---|---|']
            for r in info['relays']:
                host = '%s:%s' % (r['host'], r['port'] or 25) if r['host'] else '-'
                lines.append('| `%s` | %s | %s | %s |'
                             % (_cell(r['key']), _cell(host), _yes(r['credentials']), _yes(r['exclude'])))
        if info.get('dkim'):
            lines += ['', '### DKIM keys', '', '| record | backend | key |', '|---|---|---|']
            for d in info['dkim']:
                key = d.get('error') or ('RSA %s-bit' % d['key_size'] if d['key_type'] == 'rsa' else 'Ed25519')
                lines.append('| `%s` | %s | %s |' % (d['name'], d['backend'], _cell(key)))
        if info.get('masters'):
            lines += ['', '### Dovecot master users', '', '| name | scheme |', '|---|---|']
            for m in info['masters']:
                lines.append('| %s | %s |' % (_cell(m['name']), _cell(m.get('scheme') or '-')))
        if info.get('sieve'):
            lines += ['', '### Sieve scripts', '', '| for | filter |', '|---|---|']
            for item in info['sieve']:
                who = item['address'] if item['kind'] == 'user' else 'every account (%s)' % item['scope']
                lines.append('| %s | %s |' % (_cell(who), 'none (neutral script)' if item.get('neutral') else 'yes'))
        if info.get('fetches'):
            lines += ['', '### Fetched mailboxes', '', '| fetcher | server | username | protocol | into | keep |',
                      '|---|---|---|---|---|---|']
            for f in info['fetches']:
                if 'error' in f:
                    lines.append('| %s | `%s` | %s | | | |' % (f['fetcher'], _cell(f['file']), _cell(f['error'])))
                    continue
                lines.append('| %s | %s | %s | %s | %s | %s |' % (
                    f['fetcher'], _cell(f['server']), _cell(f['username']), f.get('protocol') or 'auto',
                    _cell(f.get('target') or '-'), _yes(f.get('keep'))))
        if info.get('drift') is not None:
            lines += ['', '### Drift from the inventory', '']
            lines += _drift_lines(info['drift']) or ['None: the host has what the inventory says.']
    return '\n'.join(lines) + '\n'


class FilterModule:
    def filters(self):
        return {
            'dms_report_summary': dms_report_summary,
            'dms_report_row': dms_report_row,
            'dms_report_markdown': dms_report_markdown,
        }
