# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_dovecot_master``: Dovecot master users in ``dovecot-masters.cf``.

The file holds ``name|{SCHEME}hash``, one master per line, what ``setup
dovecot-master add`` writes. DMS turns it into Dovecot's ``/etc/dovecot/masterdb``
(``name:{SCHEME}hash``) at start and whenever its change detector sees the file
change, enables the master passdb (``auth_master_user_separator = *``) the first
time it sees the file, and reloads Dovecot: a change applies without a restart.

Passwords go through the same engine as ``dms_account`` (:mod:`._passwords`).
"""

from __future__ import annotations

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._common import entries_of, item_path
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import split_stored
from ansible_collections.dms.mailserver.plugins.module_utils._passwords import (
    check_password_options, decide_hashes, require_schemes,
)

# The login separator DMS configures (target/dovecot/auth-master.inc): "<user@domain>*<master>".
SEPARATOR = '*'
ENTRY_FIELDS = ('name', 'password', 'password_hash', 'scheme', 'state')
MAX_NAME = 254


def master_name(value, field):
    """A master user's name as DMS's files can hold it and Dovecot can log it in. Lower-cased.

    DMS itself only refuses an empty name and lower-cases it. What would break its files or the login is
    refused here: ``|`` (the column separator of dovecot-masters.cf), ``:`` (the column separator of
    Dovecot's masterdb), ``*`` (the master login separator), white space, a leading ``#`` (a comment line)
    and non-ASCII or control characters.
    """
    v.check_text(value, field, max_len=MAX_NAME)
    for ch in value:
        if ord(ch) > 0x7e:
            raise v.ValidationError('%s: %r contains the non-ASCII character %r; master names are ASCII'
                                    % (field, value, ch))
        if ch.isspace():
            raise v.ValidationError('%s: %r contains white space, which a master login cannot carry'
                                    % (field, value))
    for sep, why in (('|', 'the column separator of dovecot-masters.cf'),
                     (':', "the column separator of Dovecot's masterdb"),
                     (SEPARATOR, 'the separator of master logins (user@domain%smaster)' % SEPARATOR)):
        if sep in value:
            raise v.ValidationError('%s: %r contains %r, %s' % (field, value, sep, why))
    if value.startswith('#'):
        raise v.ValidationError('%s: %r begins with "#", and a line of dovecot-masters.cf that begins with "#" '
                                'is a comment' % (field, value))
    return value.lower()


def read_masters(cfg):
    """The master users of ``dovecot-masters.cf`` in file order: ``name`` and the hash's ``scheme``, never a hash.

    A name given twice is listed once (Dovecot's passwd-file uses its first line).
    """
    out, seen = [], set()
    table = cfg.table('masters')
    for entry in table.entries():
        norm = table.norm(entry.key)
        if norm in seen:
            continue
        seen.add(norm)
        out.append({'name': entry.key, 'scheme': split_stored(entry.value.split('|', 1)[0].strip())[0]})
    return out


def normalize(params):
    """Validate the module's options; return (entries, warnings). Raises ValidationError."""
    warnings = []
    list_option, raw_entries = entries_of(params, 'masters', ENTRY_FIELDS, 'master user')

    entries = []
    seen = {}
    for index, entry in raw_entries:
        def field(name, index=index):
            return item_path(params, list_option, index, name)
        original = entry['name']
        name = master_name(original, field('name'))
        if name != original:
            warnings.append("%s: '%s' has uppercase letters and was normalised to '%s' (as DMS does)"
                            % (field('name'), original, name))
        if name in seen:
            raise v.ValidationError('%s: %r is listed twice (also at %s)' % (field('name'), name, seen[name]))
        seen[name] = field('name')
        check_password_options(entry, field)
        if entry['state'] == 'absent':
            for option in ('password', 'password_hash', 'scheme'):
                if entry[option] is not None:
                    raise v.ValidationError('%s: has no meaning with state=absent' % field(option))
        entries.append(dict(entry, name=name, field=field))
    require_schemes(entries)
    return entries, warnings


def plan(cfg, params, entries):
    """Edit dovecot-masters.cf of ``cfg`` to the desired state. Returns the result values."""
    masters = cfg.table('masters')
    accounts = cfg.table('accounts')
    present = [e for e in entries if e['state'] == 'present']
    absent = [e for e in entries if e['state'] == 'absent']

    # A master named like an account would make "user*name" and the account's own login ambiguous to a reader
    # (and to DMS's case-insensitive key lookups): refused.
    for e in present:
        account = accounts.get(e['name'])
        if account is not None:
            raise v.ValidationError('%s: %r is an account in postfix-accounts.cf; a master user needs a name of '
                                    'its own' % (e['field']('name'), e['name']))

    def stored_of(name):
        existing = masters.get(name)
        return None if existing is None else existing.value.split('|', 1)[0]
    decisions, warnings = decide_hashes(present, stored_of, params['update_password'], 'name')

    created, updated, removed = [], [], []
    for e in present:
        name = e['name']
        existing = masters.get(name)
        if existing is None:
            masters.set(name, '%s|%s' % (name, decisions[name]))
            created.append(name)
        elif name in decisions:
            if masters.set(name, '%s|%s' % (existing.key, decisions[name])):
                updated.append(name)
        elif len(masters.get_all(name)) > 1:
            if masters.set(name, existing.raw):  # one line per master
                updated.append(name)

    to_remove = [e['name'] for e in absent if masters.has(e['name'])]
    if params.get('exclusive'):
        keep = set(e['name'] for e in present)
        to_remove.extend(key for key in masters.keys() if masters.norm(key) not in keep)
    for name in to_remove:
        if masters.remove(name):
            removed.append(masters.norm(name))

    # DMS's change detector rebuilds masterdb and reloads Dovecot: never a restart.
    return dict(created=created, updated=updated, removed=removed, restart_required=False,
                login_separator=SEPARATOR, _warnings=warnings)
