# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inventory checks and survey input for the collection's playbooks.

The playbooks call these before they change anything on any host, so that an inventory whose parts contradict
each other fails as a whole, with a message naming the variable and item, instead of half-way through a run.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v

# The single-entry variables an AWX survey (or -e) sets for dms.mailserver.accounts.
SURVEY_ACCOUNT = 'dms_account_address'
SURVEY_ALIAS = 'dms_alias_address'
_PRESENT = ('present', None)


def _given(value):
    """Survey answers left empty arrive as '' (or not at all)."""
    return value is not None and not (isinstance(value, str) and value.strip() == '')


def _words(value, field):
    """A list, or a string of items separated by commas, spaces or line breaks (a survey's text answer)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [w for w in value.replace(',', ' ').split() if w]
    if isinstance(value, (list, tuple)):
        out = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise AnsibleFilterError('%s[%d]: expected a string, got %r' % (field, index, item))
            out.extend(_words(item, field))
        return out
    raise AnsibleFilterError('%s: expected a list or a comma-separated string, got %r' % (field, value))


def _bool(value, field):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('1', 'true', 'yes', 'on'):
        return True
    if text in ('0', 'false', 'no', 'off', ''):
        return False
    raise AnsibleFilterError('%s: %r is not a boolean (use true or false)' % (field, value))


def dms_survey_entries(data):
    """The account and alias a survey (or ``-e``) asks for, as items of ``dms_accounts`` / ``dms_aliases``.

    ``data`` holds the survey variables: ``dms_account_address``, ``dms_account_password``, ``dms_account_quota``,
    ``dms_account_restrict``, ``dms_account_state``, ``dms_alias_address``, ``dms_alias_recipients``,
    ``dms_alias_state``. Empty answers count as not given. Returns ``{'accounts': [...], 'aliases': [...]}``.
    """
    data = data or {}
    if not isinstance(data, dict):
        raise AnsibleFilterError('dms_survey_entries: expected a dict of survey variables')
    accounts, aliases = [], []
    if _given(data.get(SURVEY_ACCOUNT)):
        state = str(data.get('dms_account_state') or 'present').strip()
        if state not in ('present', 'absent'):
            raise AnsibleFilterError('dms_account_state: %r is not present or absent' % state)
        entry = {'address': str(data[SURVEY_ACCOUNT]).strip(), 'state': state}
        if state == 'present':
            if _given(data.get('dms_account_password')):
                entry['password'] = str(data['dms_account_password'])
            if _given(data.get('dms_account_quota')):
                entry['quota'] = str(data['dms_account_quota']).strip()
            if _given(data.get('dms_account_restrict')):
                words = _words(data['dms_account_restrict'], 'dms_account_restrict')
                entry['restrict'] = [] if words == ['none'] else words
        accounts.append(entry)
    elif _given(data.get('dms_account_password')):
        raise AnsibleFilterError('dms_account_password is set but dms_account_address is not: which account?')
    if _given(data.get(SURVEY_ALIAS)):
        state = str(data.get('dms_alias_state') or 'present').strip()
        if state not in ('present', 'absent'):
            raise AnsibleFilterError('dms_alias_state: %r is not present or absent' % state)
        entry = {'alias': str(data[SURVEY_ALIAS]).strip(), 'state': state}
        recipients = _words(data.get('dms_alias_recipients'), 'dms_alias_recipients')
        if state == 'present':
            if not recipients:
                raise AnsibleFilterError('dms_alias_recipients: an alias needs at least one recipient')
            entry['recipients'] = recipients
            if _bool(data.get('dms_alias_append', False), 'dms_alias_append'):
                entry['append'] = True
        elif recipients:
            entry['recipients'] = recipients
        aliases.append(entry)
    elif _given(data.get('dms_alias_recipients')):
        raise AnsibleFilterError('dms_alias_recipients is set but dms_alias_address is not: which alias?')
    return {'accounts': accounts, 'aliases': aliases}


def _items(data, name, errors):
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append('%s: expected a list of dicts, got %s' % (name, type(value).__name__))
        return []
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            errors.append('%s[%d]: expected a dict, got %r' % (name, index, item))
            continue
        out.append((index, item))
    return out


def _check(errors, func, value, field):
    try:
        return func(value, field)
    except v.ValidationError as exc:
        errors.append(str(exc))
        return None


def _state(item):
    return item.get('state') or 'present'


class _Seen:
    """First field that named each key, for duplicate messages."""

    def __init__(self, what, errors):
        self.what = what
        self.errors = errors
        self.first = {}

    def add(self, key, field):
        if key in self.first:
            self.errors.append('%s: %s is %s again (first in %s)' % (field, key, self.what, self.first[key]))
            return False
        self.first[key] = field
        return True


def _accounts(entries, errors):
    """{address: (field, item)} of the entries; malformed ones are reported."""
    out = {}
    seen = _Seen('listed', errors)
    for field_base, item in entries:
        raw = item.get('address', item.get('name'))
        if raw is None:
            errors.append('%s: has no address' % field_base)
            continue
        addr = _check(errors, v.address, raw, field_base + '.address')
        if addr is not None and seen.add(addr, field_base + '.address'):
            out[addr] = (field_base, item)
    return out


def _aliases(entries, errors):
    """{key: (field, item)} of the virtual aliases (regexp aliases are not compared)."""
    out = {}
    seen = _Seen('listed', errors)
    for field_base, item in entries:
        raw = item.get('alias', item.get('name'))
        if raw is None:
            errors.append('%s: has no alias' % field_base)
            continue
        if item.get('type') == 'regexp' or (isinstance(raw, str) and raw.startswith('/')):
            continue
        key = _check(errors, v.catchall_or_address, raw, field_base + '.alias')
        if key is not None and seen.add(key, field_base + '.alias'):
            out[key] = (field_base, item)
    return out


def _domain_of(key):
    return key.rsplit('@', 1)[1]


def _recipients(item):
    try:
        return [r.lower() for r in _words(item.get('recipients'), 'recipients')]
    except AnsibleFilterError:
        return []


def dms_mail_domains(data):
    """Sorted mail domains of the accounts and virtual aliases of ``data`` (``dms_accounts``, ``dms_aliases``).

    Entries with ``state: absent`` and regexp aliases do not count; malformed entries are ignored here (the
    inventory check reports them).
    """
    return sorted(set(_domain_of(key) for key in dms_mail_addresses(data)))


def dms_mail_addresses(data):
    """Sorted accounts and virtual alias keys (catch-alls as ``@domain``) of ``data`` that are present."""
    errors = []
    data = data or {}
    accounts = _accounts([('dms_accounts[%d]' % i, it) for i, it in _items(data, 'dms_accounts', errors)], errors)
    aliases = _aliases([('dms_aliases[%d]' % i, it) for i, it in _items(data, 'dms_aliases', errors)], errors)
    return sorted(set(key for key, (dummy, item) in list(accounts.items()) + list(aliases.items())
                      if _state(item) in _PRESENT))


def dms_inventory_errors(data):
    """Everything in one host's inventory that contradicts itself, as a list of messages (empty: consistent).

    ``data`` holds the variables by name: ``dms_accounts``, ``dms_accounts_exclusive``, ``dms_aliases``,
    ``dms_aliases_exclusive``, ``dms_dkim``, ``dms_relays``, and the survey variables of
    :func:`dms_survey_entries`.
    """
    data = data or {}
    if not isinstance(data, dict):
        raise AnsibleFilterError('dms_inventory_errors: expected a dict of variables')
    errors = []
    accounts = _accounts([('dms_accounts[%d]' % i, it) for i, it in _items(data, 'dms_accounts', errors)], errors)
    aliases = _aliases([('dms_aliases[%d]' % i, it) for i, it in _items(data, 'dms_aliases', errors)], errors)

    try:
        survey = dms_survey_entries(data)
    except AnsibleFilterError as exc:
        errors.append(str(exc))
        survey = {'accounts': [], 'aliases': []}
    s_accounts = _accounts([(SURVEY_ACCOUNT, {'address': e['address'], 'state': e['state']})
                            for e in survey['accounts']], errors)
    s_aliases = _aliases([(SURVEY_ALIAS, dict(e)) for e in survey['aliases']], errors)

    present_accounts = dict((k, f) for k, (f, it) in accounts.items() if _state(it) in _PRESENT)
    present_accounts.update((k, f) for k, (f, it) in s_accounts.items() if _state(it) in _PRESENT)

    # An alias whose key is also an account takes the account's mail (the modules refuse it, but only when they
    # reach it, after other changes were made). A self-alias (the address as its only recipient) is fine.
    for key, (field, item) in list(aliases.items()) + list(s_aliases.items()):
        if _state(item) not in _PRESENT or key not in present_accounts:
            continue
        if _recipients(item) == [key]:
            continue
        errors.append('%s: %s is also an account (%s); an alias with the address of an account takes its mail. '
                      'Remove one of them, or list the account among the recipients of a separate alias'
                      % (field + ('' if field == SURVEY_ALIAS else '.alias'), key, present_accounts[key]))

    # The survey adds to what the inventory manages; it must not manage the same entries.
    exclusive_acc = _bool(data.get('dms_accounts_exclusive', False), 'dms_accounts_exclusive')
    exclusive_ali = _bool(data.get('dms_aliases_exclusive', False), 'dms_aliases_exclusive')
    for key in s_accounts:
        if key in accounts:
            errors.append('%s: %s is managed by the inventory (%s); change it there, or the next run of the '
                          'accounts or site playbook puts the inventory\'s values back'
                          % (SURVEY_ACCOUNT, key, accounts[key][0]))
        elif key in aliases:
            errors.append('%s: %s is an alias in the inventory (%s)' % (SURVEY_ACCOUNT, key, aliases[key][0]))
        elif exclusive_acc:
            errors.append('%s: dms_accounts_exclusive is true for this host, so the next inventory run would '
                          'remove %s again; add it to dms_accounts instead' % (SURVEY_ACCOUNT, key))
    for key in s_aliases:
        if key in aliases:
            errors.append('%s: %s is managed by the inventory (%s); change it there, or the next run of the '
                          'accounts or site playbook puts the inventory\'s values back'
                          % (SURVEY_ALIAS, key, aliases[key][0]))
        elif exclusive_ali:
            errors.append('%s: dms_aliases_exclusive is true for this host, so the next inventory run would '
                          'remove %s again; add it to dms_aliases instead' % (SURVEY_ALIAS, key))

    domains = set(_domain_of(k) for k in present_accounts)
    domains.update(_domain_of(k) for k, (f, it) in list(aliases.items()) + list(s_aliases.items())
                   if _state(it) in _PRESENT)

    seen = _Seen('listed', errors)
    for index, item in _items(data, 'dms_dkim', errors):
        field = 'dms_dkim[%d].domain' % index
        if item.get('domain') is None:
            errors.append('%s: is missing' % field)
            continue
        dom = _check(errors, v.domain, item['domain'], field)
        if dom is None or not seen.add(dom, field):
            continue
        if _state(item) in _PRESENT and dom not in domains:
            errors.append('%s: no account or alias uses the domain %s, so nothing would be signed with its key '
                          '(mail domains: %s)' % (field, dom, ', '.join(sorted(domains)) or 'none'))

    seen = _Seen('listed', errors)
    for index, item in _items(data, 'dms_relays', errors):
        if item.get('domain') is None:
            continue  # credentials for the default relay host
        field = 'dms_relays[%d].domain' % index
        raw = item['domain']
        dom = _check(errors, v.domain, raw[1:] if isinstance(raw, str) and raw.startswith('@') else raw, field)
        if dom is None or not seen.add(dom, field):
            continue
        if _state(item) in _PRESENT and dom not in domains:
            errors.append('%s: no account or alias uses the domain %s, so no mail would be sent through this relay '
                          '(mail domains: %s)' % (field, dom, ', '.join(sorted(domains)) or 'none'))
    return errors


def dms_dkim_items(items, env, rspamd_id=''):
    """The role's dms_dkim items with the backend DMS's own ``setup config dkim`` would choose when an item names
    none (Rspamd when ENABLE_RSPAMD=1 and ENABLE_OPENDKIM=0, else OpenDKIM), and, for Rspamd keys, the ids of the
    image's _rspamd user as key_owner/key_group (parsed from ``id _rspamd`` output) unless the item sets them.
    ``in_use`` says whether the backend's signer runs with this environment (OpenDKIM: ENABLE_OPENDKIM, default 1;
    Rspamd: ENABLE_RSPAMD, default 0): a key of a signer that is off signs nothing and is not to be published."""
    if not isinstance(items, list):
        raise AnsibleFilterError('dms_dkim_items: expected the list dms_dkim')
    env = env or {}

    def flag(name, default):
        value = str(env.get(name, default)).strip().lower()
        return value in ('1', 'true', 'yes', 'on')

    default = 'rspamd' if flag('ENABLE_RSPAMD', 0) and not flag('ENABLE_OPENDKIM', 1) else 'opendkim'
    running = {'rspamd': flag('ENABLE_RSPAMD', 0), 'opendkim': flag('ENABLE_OPENDKIM', 1)}
    ids = {}
    for part in str(rspamd_id or '').split():
        key, sep, value = part.partition('=')
        if sep and key in ('uid', 'gid'):
            number = value.split('(', 1)[0]
            if number.isdigit():
                ids[key] = int(number)
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise AnsibleFilterError('dms_dkim_items: every dms_dkim item must be a dict')
        merged = {'backend': default}
        backend = item.get('backend') or default
        if backend == 'rspamd' and 'uid' in ids and 'gid' in ids:
            merged.update(key_owner=ids['uid'], key_group=ids['gid'])
        merged.update((k, v_) for k, v_ in item.items() if v_ is not None)
        merged['in_use'] = running.get(merged['backend'], False)
        out.append(merged)
    return out


def dms_dkim_group_errors(hosts):
    """Hosts of one play that would publish different DKIM keys under one record name.

    ``hosts`` is a list of ``{'host': name, 'shared': dms_dkim_shared, 'dkim': dms_dkim}``. Two hosts that sign a
    domain with the same selector need the same key, which only ``dms_dkim_shared: true`` gives them.
    """
    users = {}
    shared = {}
    for host in hosts or []:
        name = host.get('host')
        shared[name] = _bool(host.get('shared', False), '%s: dms_dkim_shared' % name)
        for item in host.get('dkim') or []:
            if not isinstance(item, dict) or not isinstance(item.get('domain'), str) or _state(item) not in _PRESENT:
                continue
            key = (item['domain'].strip().lower(), str(item.get('selector') or 'mail').strip().lower())
            users.setdefault(key, []).append(name)
    errors = []
    for (domain, selector), names in sorted(users.items()):
        if len(names) > 1 and not all(shared[n] for n in names):
            errors.append('the hosts %s all sign %s with the selector %s, but dms_dkim_shared is not true for %s, so '
                          'their keys would differ under the one record %s._domainkey.%s. Set dms_dkim_shared: true '
                          'for these hosts, or give each host its own selector'
                          % (', '.join(names), domain, selector,
                             ', '.join(n for n in names if not shared[n]), selector, domain))
    return errors


class FilterModule:
    def filters(self):
        return {
            'dms_dkim_group_errors': dms_dkim_group_errors,
            'dms_dkim_items': dms_dkim_items,
            'dms_inventory_errors': dms_inventory_errors,
            'dms_mail_addresses': dms_mail_addresses,
            'dms_mail_domains': dms_mail_domains,
            'dms_survey_entries': dms_survey_entries,
        }
