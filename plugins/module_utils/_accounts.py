# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_account``: accounts, passwords, quotas and restrictions.

Files: ``postfix-accounts.cf`` (``address|{SCHEME}hash[|extra fields]``),
``dovecot-quotas.cf`` (``address:QUOTA``), ``postfix-send-access.cf`` and
``postfix-receive-access.cf`` (``address \\t\\t REJECT``, what ``setup email
restrict add`` writes), and ``postfix-virtual.cf`` for alias references and
catch-all self-aliases.
"""

from __future__ import annotations

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._aliases import (
    is_self_alias, reconcile_self_aliases, remove_recipients_everywhere, split_recipients,
)
from ansible_collections.dms.mailserver.plugins.module_utils._common import entries_of, item_path
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import split_stored
from ansible_collections.dms.mailserver.plugins.module_utils._passwords import (
    check_password_options, decide_hashes, require_schemes,
)

RESTRICT_FILES = (('send', 'send_access'), ('receive', 'receive_access'))
ENTRY_FIELDS = ('address', 'password', 'password_hash', 'scheme', 'quota', 'restrict', 'state')


def restrict_line(address):
    """The line ``setup email restrict add`` writes: address, space, two tabs, space, REJECT."""
    return '%s \t\t REJECT' % address


def normalize(params):
    """Validate the module's options; return (entries, warnings). Raises ValidationError."""
    warnings = []
    list_option, raw_entries = entries_of(params, 'accounts', ENTRY_FIELDS, 'account')
    if list_option and params.get('exclusive') and not any(e['state'] == 'present' for dummy, e in raw_entries):
        raise v.ValidationError('accounts: exclusive=true with no account to keep would remove every account, '
                                'and DMS shuts down without one; refusing')

    entries = []
    seen = {}
    for index, entry in raw_entries:
        def field(name, index=index):
            return item_path(params, list_option, index, name)
        original = entry['address']
        address = v.address(original, field('address'))
        if address != original:
            warnings.append("%s: '%s' has uppercase letters and was normalised to '%s' (as DMS does)"
                            % (field('address'), original, address))
        if address in seen:
            raise v.ValidationError('%s: %r is listed twice (also at %s)' % (field('address'), address, seen[address]))
        seen[address] = field('address')
        check_password_options(entry, field)
        quota = entry['quota']
        if quota is not None and quota != '':
            quota = v.quota(quota, field('quota'))
        restrict = entry['restrict']
        if restrict is not None:
            for i, item in enumerate(restrict):
                if item not in ('send', 'receive'):
                    raise v.ValidationError('%s[%d]: %r is not a restriction: use send or receive'
                                            % (field('restrict'), i, item))
            restrict = sorted(set(restrict))
        if entry['state'] == 'absent':
            for name in ('password', 'password_hash', 'quota', 'restrict'):
                if entry[name] not in (None, []):
                    raise v.ValidationError('%s: has no meaning with state=absent' % field(name))
        entries.append(dict(entry, address=address, quota=quota, restrict=restrict, field=field))
    require_schemes(entries)
    return entries, warnings


class _SuffixIndex:
    """Which keys end with a given address (DMS's quota lookup is an unanchored substring match).

    A key ending with ``local@domain`` has the same domain and a local part
    ending with ``local``; keys are kept per domain, by reversed local part,
    so each lookup is a bisection instead of a scan.
    """

    def __init__(self, keys):
        import bisect
        self._bisect = bisect
        self._order = dict((key, pos) for pos, key in enumerate(keys))
        self._by_domain = {}
        for key in keys:
            if '@' in key:
                local, domain = key.rsplit('@', 1)
                self._by_domain.setdefault(domain, []).append((local[::-1], key))
        for items in self._by_domain.values():
            items.sort()

    def add(self, key, before=None):
        """Record a key added to the file: at the end, or just before ``before``."""
        if before is not None and before in self._order:
            self._order[key] = self._order[before] - 0.5
        else:
            self._order[key] = len(self._order) + 1
        local, domain = key.rsplit('@', 1)
        self._bisect.insort(self._by_domain.setdefault(domain, []), (local[::-1], key))

    def longer_keys(self, address):
        """Keys other than ``address`` that end with it, in file order."""
        local, domain = address.rsplit('@', 1)
        items = self._by_domain.get(domain, [])
        rev = local[::-1]
        pos = self._bisect.bisect_left(items, (rev, ''))
        found = []
        while pos < len(items) and items[pos][0].startswith(rev):
            if items[pos][1] != address:
                found.append(items[pos][1])
            pos += 1
        return sorted(found, key=lambda k: self._order.get(k, len(self._order)))

    def first_before(self, address):
        """A longer key standing before ``address``'s own line (or before the end when it has none)."""
        mine = self._order.get(address)
        for key in self.longer_keys(address):
            if mine is None or self._order[key] < mine:
                return key
        return None


def plan(cfg, params, entries):
    """Edit the tables of ``cfg`` to the desired state. Returns the result values."""
    accounts = cfg.table('accounts')
    quotas = cfg.table('quotas')
    virtual = cfg.table('virtual')
    regexp = cfg.table('regexp')
    access = dict((direction, cfg.table(name)) for direction, name in RESTRICT_FILES)

    update_password = params['update_password']
    created, updated, removed = [], [], []
    warnings = []

    present = [e for e in entries if e['state'] == 'present']
    absent = [e for e in entries if e['state'] == 'absent']

    # Refuse an account whose address is an alias key (exact, case-insensitive; self-aliases are ours).
    if not params['allow_alias_overlap']:
        for e in present:
            alias = virtual.get(e['address'])
            if alias is not None and not is_self_alias(alias):
                raise v.ValidationError(
                    '%s: %r is already an alias in postfix-virtual.cf (-> %s); set allow_alias_overlap=true '
                    'to keep both' % (e['field']('address'), e['address'], alias.value.strip()))

    # Hashes: new accounts hashed, given passwords verified against the stored hashes (kept when they match).
    def stored_of(address):
        existing = accounts.get(address)
        return None if existing is None else existing.value.split('|', 1)[0]
    decisions, hash_warnings = decide_hashes(present, stored_of, update_password, 'address')
    warnings.extend(hash_warnings)

    quota_index = None
    for e in present:
        address = e['address']
        existing = accounts.get(address)
        touched = False
        if existing is None:
            accounts.set(address, '%s|%s' % (address, decisions[address]))
            created.append(address)
        elif address in decisions:
            rest = existing.value.split('|', 1)
            extra = '|' + rest[1] if len(rest) > 1 else ''
            touched |= accounts.set(address, '%s|%s%s' % (existing.key, decisions[address], extra))
        elif len(accounts.get_all(address)) > 1:
            touched |= accounts.set(address, existing.raw)  # drop duplicate lines of one account
        if e['quota'] is not None:
            if e['quota'] == '':
                touched |= quotas.remove(address)
            else:
                current = quotas.get(address)
                if current is None or current.value != e['quota'] or len(quotas.get_all(address)) > 1:
                    line = '%s:%s' % (current.key if current is not None else address, e['quota'])
                    anchor = None
                    if current is None:
                        if quota_index is None:
                            quota_index = _SuffixIndex(quotas.keys())
                        anchor = quota_index.first_before(address)
                        quota_index.add(address, before=anchor)
                    touched |= quotas.set(address, line, before_key=anchor)
        if e['restrict'] is not None:
            for direction, dummy in RESTRICT_FILES:
                table = access[direction]
                if direction in e['restrict']:
                    current = table.get(address)
                    if current is None or current.value.strip().upper() != 'REJECT' \
                            or len(table.get_all(address)) > 1:
                        touched |= table.set(address, restrict_line(address))
                else:
                    for item in table.get_all(address):
                        if item.value.strip().upper() == 'REJECT':
                            touched |= table.remove_entry(item)
        if touched and address not in created:
            updated.append(address)

    # Removals: explicit state=absent, and with exclusive every account not listed.
    to_remove = [e['address'] for e in absent if accounts.has(e['address'])]
    if params.get('exclusive'):
        keep = set(e['address'] for e in present)
        to_remove.extend(key for key in accounts.keys() if key not in keep and '@' in key)
    if to_remove:
        for address in to_remove:
            accounts.remove(address)
            quotas.remove(address)
            for table in access.values():
                table.remove(address)
        remove_recipients_everywhere(virtual, to_remove)
        removed.extend(to_remove)

    reconcile_self_aliases(accounts, virtual, regexp)

    # DMS's quota lookup is a substring match: say so where it would pick another account's quota.
    quota_entries = [e for e in present if e['quota'] is not None]
    if quota_entries:
        index = _SuffixIndex(quotas.keys())
        for e in quota_entries:
            other = index.first_before(e['address'])
            if other is not None and (quotas.has(e['address']) or e['quota'] == ''):
                warnings.append('%s: DMS would apply the quota of %r to %r (its quota lookup is a substring '
                                'match); put %r\'s line first in dovecot-quotas.cf'
                                % (e['field']('quota'), other, e['address'], e['address']))

    restart = any(access[d].changed for d, dummy in RESTRICT_FILES)
    return dict(created=created, updated=updated, removed=removed, restart_required=restart,
                _warnings=warnings)


# -- reading (dms_info) -----------------------------------------------------------------


def restrictions_of(access, address):
    """The restrictions (``send``, ``receive``) the access tables hold for ``address``, sorted."""
    return sorted(direction for direction, dummy in RESTRICT_FILES
                  if any(item.value.strip().upper() == 'REJECT' for item in access[direction].get_all(address)))


def _first_values(table):
    """{normalised key: the value of its first line} of a table, in one pass."""
    out = {}
    for entry in table.entries():
        out.setdefault(table.norm(entry.key), entry.value)
    return out


def _applied_quota_keys(quotas):
    """{address: the first key of dovecot-quotas.cf that DMS's substring lookup finds for it, when that is a
    longer key} -- the lookup of :class:`_SuffixIndex` for every address at once: a key ``local@domain``
    contains ``l@domain:`` for every ``l`` that ends its local part."""
    first = {}
    for pos, norm in enumerate(quotas.keys()):
        if '@' not in norm:
            continue
        local, domain = norm.rsplit('@', 1)
        for i in range(1, len(local)):
            first.setdefault('%s@%s' % (local[i:], domain), (pos, norm))
    return first


def read_accounts(cfg):
    """The accounts of ``postfix-accounts.cf`` in file order, one dict each, without their hashes.

    Lean records: ``address`` and ``scheme`` always; ``quota``, ``quota_applied``, ``restrict``,
    ``extra_fields`` and ``aliases`` only when the account has one (a quota line, a restriction, Dovecot extra
    fields, an alias), so that 10,000 accounts make a result ansible-core handles quickly (every key and every
    empty list costs time in ``exit_json`` and on the controller).

    ``quota`` is the account's own line of ``dovecot-quotas.cf`` (what ``dms_account`` writes);
    ``quota_applied`` is the line DMS applies (its lookup is a substring match, so a longer address's line
    standing before it wins) and is only there when it differs.  ``aliases`` are the keys of the
    ``postfix-virtual.cf`` lines that list the account as a recipient (what ``setup email list`` shows).
    """
    accounts = cfg.table('accounts')
    quotas = cfg.table('quotas')
    quota_values = _first_values(quotas)
    quota_pos = dict((norm, pos) for pos, norm in enumerate(quotas.keys()))
    longer = _applied_quota_keys(quotas)
    rejected = {}
    for direction, name in RESTRICT_FILES:
        table = cfg.table(name)
        for entry in table.entries():
            if entry.value.strip().upper() == 'REJECT':
                rejected.setdefault(table.norm(entry.key), set()).add(direction)
    aliases_of = {}
    for entry in cfg.table('virtual').entries():
        for recipient in split_recipients(entry.value):
            keys = aliases_of.setdefault(recipient.lower(), [])
            if entry.key not in keys:
                keys.append(entry.key)
    out = []
    seen = set()
    for entry in accounts.entries():
        norm = entry.key.strip().lower()
        if norm in seen:
            continue
        seen.add(norm)
        fields = entry.value.split('|')
        item = {'address': entry.key, 'scheme': split_stored(fields[0].strip())[0]}
        quota = quota_values.get(norm)
        if quota is not None:
            item['quota'] = quota
        other = longer.get(norm)
        if other is not None and (quota is None or other[0] < quota_pos[norm]):
            item['quota_applied'] = quota_values[other[1]]
        if norm in rejected:
            item['restrict'] = sorted(rejected[norm])
        if len(fields) > 1 and any(field.strip() for field in fields[1:]):
            item['extra_fields'] = True
        if norm in aliases_of:
            item['aliases'] = aliases_of[norm]
        out.append(item)
    return out
