# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_relay``: sender-dependent relay hosts, their credentials and opt-outs.

Files (both Postfix lookup tables, ``key whitespace value``):

``postfix-relaymap.cf``
    ``@domain [host]:port`` sends mail of senders in ``domain`` through that
    relay (what ``setup relay add-domain`` writes).  ``@domain`` *without* a
    value is an opt-out from the ``RELAY_HOST`` default (what ``setup relay
    exclude-domain`` writes, with a trailing space: ``"@domain "``).  DMS
    copies only lines that have a value into Postfix's
    ``sender_dependent_relayhost_maps``; its ``RELAY_HOST`` support treats a
    line ``^\\s*@domain\\s*$`` as the opt-out.  Both spellings are read as
    opt-outs; the module writes the CLI's, so ``setup relay`` still finds it.

``postfix-sasl-password.cf`` (mode 0600, passwords in plain text as Postfix needs them)
    ``@domain username:password`` (``setup relay add-auth``), or credentials
    keyed by the relay host itself, ``[host]:port username:password``, for
    the relay of ``DEFAULT_RELAY_HOST``/``RELAY_HOST`` (valid for Postfix, the
    CLI cannot write it).

An item is identified by its key: ``@domain`` when it has a ``domain``,
otherwise ``[host]:port`` (credentials for a relay host).  Parts of an item
that are not given are left as they are, so each ``setup relay`` command has
a one-item equivalent that changes exactly what the command changes.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._common import entries_of, item_path
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import FILES

ENTRY_FIELDS = ('domain', 'host', 'port', 'username', 'password', 'exclude', 'state')
DEFAULT_PORT = 25
SASL_RELPATH = FILES['sasl'].relpath
SASL_MODE = FILES['sasl'].mode

_DOTTED_NUMBERS = re.compile(r'^[0-9.]+$')


# -- line formats ----------------------------------------------------------------


def domain_key(domain):
    """The table key of a sender domain: ``@domain``."""
    return '@' + domain


def relay_value(host, port):
    """``[host]:port`` as ``setup relay add-domain`` writes it (brackets: no MX lookup)."""
    return '[%s]:%d' % (host, port)


def optout_line(key):
    """The opt-out line exactly as ``setup relay exclude-domain`` writes it: key and one trailing space."""
    return key + ' '


def table_line(key, value):
    """``KEY VALUE`` with one space, as DMS's CLI writes every relay and SASL line."""
    return '%s %s' % (key, value)


def is_optout(entry):
    """A relaymap line without a value (``@domain`` or ``@domain ``) opts the domain out."""
    return entry.value.strip() == ''


def split_relay_value(value):
    """``(host, port)`` of a relaymap value: ``[host]:port``, ``host:port``, ``[host]`` or ``host``.

    The port is an int, or None when the value names none (Postfix then uses 25); brackets (no MX lookup)
    are dropped.  An IPv6 address is only recognised in brackets, as Postfix requires.
    """
    value = value.strip()
    host, port = value, None
    if value.startswith('['):
        close = value.find(']')
        if close > 0:
            host, rest = value[1:close], value[close + 1:]
            if rest.startswith(':') and rest[1:].isdigit():
                port = int(rest[1:])
    elif value.count(':') == 1:
        name, number = value.split(':')
        if number.isdigit():
            host, port = name, int(number)
    return host, port


def read_relays(relaymap, sasl):
    """Every key of both files in file order (relaymap first, then keys only in the SASL file), as dicts.

    ``credentials`` says whether the SASL file has a line for the key; the credentials themselves (and so any
    password) are never part of the result.  Only the first line of a key counts, as for Postfix.
    """
    out = []
    for norm in relaymap.keys() + [key for key in sasl.keys() if not relaymap.has(key)]:
        entry = relaymap.get(norm)
        spelled = entry.key if entry is not None else sasl.get(norm).key
        item = dict(key=spelled, domain=spelled[1:].lower() if spelled.startswith('@') else None,
                    host=None, port=None, exclude=False, credentials=sasl.has(norm))
        if entry is not None:
            if is_optout(entry):
                item['exclude'] = True
            else:
                item['host'], item['port'] = split_relay_value(entry.value)
        elif not spelled.startswith('@'):
            item['host'], item['port'] = split_relay_value(spelled)
        out.append(item)
    return out


# -- validation ------------------------------------------------------------------


def _fail(field, problem):
    raise v.ValidationError('%s: %s' % (field, problem))


def _domain(value, field):
    if isinstance(value, str) and value.startswith('@'):
        value = value[1:]
    return v.domain(value, field)


def _host(value, field):
    if isinstance(value, str) and _DOTTED_NUMBERS.match(value):
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            _fail(field, '%r is not a valid IPv4 address (four numbers 0-255 separated by dots, '
                         'no leading zeros)' % value)
    return v.host(value, field)


def _username(value, field):
    v.check_text(value, field, max_len=256)
    if ':' in value:
        _fail(field, '%r contains ":", which separates the username from the password in '
                     'postfix-sasl-password.cf (username:password), so the username cannot contain it' % value)
    if value != value.strip():
        _fail(field, '%r begins or ends with white space, which Postfix (or, for non-ASCII white space, the '
                     'collection reading the file back) strips from table values' % value)
    return value


def _password(value, field):
    """Like check_text, but the message never shows the password."""
    if not isinstance(value, str):
        _fail(field, 'must be a string')
    if not value:
        _fail(field, 'must not be empty')
    if len(value) > 1024:
        _fail(field, 'is longer than 1024 characters')
    for ch in value:
        if ch in '\r\n':
            _fail(field, 'contains a line break (a trailing newline from a file lookup?); a line of '
                         'postfix-sasl-password.cf cannot carry it')
        if ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f:
            _fail(field, 'contains a control character (0x%02x), which a Postfix table line cannot carry' % ord(ch))
    if value != value.strip():
        # Postfix strips ASCII white space from the ends of a table value; the collection's reader strips any
        # (a non-breaking space too), and would then rewrite the line on every run.
        _fail(field, 'begins or ends with white space, which Postfix (or, for non-ASCII white space, the '
                     'collection reading the file back) strips from table values')
    return value


def normalize(params):
    """Validate the module's options; return (entries, warnings). Raises ValidationError.

    Each entry is a dict with ``key`` (``@domain`` or ``[host]:port``), ``kind``
    (``domain`` or ``host``), ``state``, ``field`` (name builder for messages),
    ``relay`` (None = leave, ``set``, ``exclude``, ``unexclude``, ``remove``),
    ``relay_value``, ``creds`` (None = leave, ``set``, ``remove``) and ``creds_value``.
    """
    warnings = []
    list_option, raw_entries = entries_of(params, 'relays', ENTRY_FIELDS, 'relay entry')

    entries = []
    seen = {}
    for index, raw in raw_entries:
        def field(name, index=index):
            return item_path(params, list_option, index, name)
        entry = _normalize_entry(raw, field, bool(params.get('exclusive')))
        norm = entry['key'].lower()
        if norm in seen:
            raise v.ValidationError('%s: %s is listed twice (also at %s)'
                                    % (field(entry['key_field']), entry['key'], seen[norm]))
        seen[norm] = field(entry['key_field'])
        entries.append(entry)
    return entries, warnings


def _normalize_entry(raw, field, exclusive=False):
    state = raw['state']
    domain, host, port = raw['domain'], raw['host'], raw['port']
    username, password, exclude = raw['username'], raw['password'], raw['exclude']
    entry = dict(state=state, field=field, relay=None, relay_value=None, creds=None, creds_value=None)

    if domain is not None:
        entry.update(kind='domain', key_field='domain')
        entry['key'] = domain_key(_domain(domain, field('domain')))
    else:
        entry.update(kind='host', key_field='host')
        if host is None or host == '':
            _fail(field('domain'), 'is required (a sender domain); without it, give host (and port) with username '
                                   'and password to set credentials for a relay host')

    # state=absent: the key alone says what to remove.
    if state == 'absent':
        names = ('username', 'password', 'exclude') if entry['kind'] == 'host' else \
            ('host', 'port', 'username', 'password', 'exclude')
        for name in names:
            if raw[name] is not None:
                _fail(field(name), 'has no meaning with state=absent (it removes every line of %s)'
                      % ('the relay host\'s credentials' if entry['kind'] == 'host' else 'the domain'))
        if entry['kind'] == 'host':
            host = _host(host, field('host'))
            port = v.port(DEFAULT_PORT if port is None else port, field('port'))
            entry['key'] = relay_value(host, port)
        return entry

    # The relay part.
    if entry['kind'] == 'host':
        if exclude is not None:
            _fail(field('exclude'), 'needs domain: only a sender domain can opt out of relaying')
        host = _host(host, field('host'))
        port = v.port(DEFAULT_PORT if port is None else port, field('port'))
        entry['key'] = relay_value(host, port)
    elif host == '':
        if port is not None:
            _fail(field('port'), 'has no meaning with host="" (which removes the domain\'s relay line)')
        if exclude:
            _fail(field('exclude'), 'contradicts host="" (which removes the domain\'s relay line)')
        entry['relay'] = 'remove'
    elif host is not None:
        if exclude:
            _fail(field('exclude'), 'contradicts host: a domain either goes through a relay host or opts out')
        host = _host(host, field('host'))
        port = v.port(DEFAULT_PORT if port is None else port, field('port'))
        entry['relay'] = 'set'
        entry['relay_value'] = relay_value(host, port)
    else:
        if port is not None:
            _fail(field('port'), 'needs host (the relay host the port belongs to)')
        if exclude is True:
            entry['relay'] = 'exclude'
        elif exclude is False:
            entry['relay'] = 'unexclude'

    # The credentials part.
    if password is not None and username is None:
        _fail(field('password'), 'needs username (the line is username:password)')
    if username == '':
        if password is not None:
            _fail(field('password'), 'has no meaning with username="" (which removes the credentials)')
        if entry['kind'] == 'host':
            _fail(field('username'), '"" would remove the relay host\'s credentials: use state=absent for that')
        entry['creds'] = 'remove'
    elif username is not None:
        username = _username(username, field('username'))
        if password is None:
            _fail(field('username'), 'needs password (postfix-sasl-password.cf holds username:password)')
        password = _password(password, field('password'))
        if entry['relay'] == 'exclude':
            _fail(field('username'), 'contradicts exclude=true: an opted-out domain is not relayed, and '
                                     'Postfix would offer its credentials to every destination server')
        entry['creds'] = 'set'
        entry['creds_value'] = '%s:%s' % (username, password)
    elif entry['kind'] == 'host':
        _fail(field('username'), 'is required for an item without domain: such an item sets the credentials for '
                                 'the relay host %s (give domain to route a sender domain)' % entry['key'])
    # An item that names a domain and asks for nothing else is a mistake (a forgotten host or credentials), except
    # in a relays list with exclusive=true, where it keeps the domain's lines.
    if entry['relay'] is None and entry['creds'] is None and not exclusive:
        _fail(field('domain'), '%s is given alone, which asks for nothing: expected host (the relay for its mail), '
                               'username and password (its credentials), exclude (opt out of RELAY_HOST, or back '
                               'in), or state=absent (remove its lines); a domain alone only keeps its lines in a '
                               'relays list with exclusive=true' % entry['key'])
    return entry


# -- planning --------------------------------------------------------------------


def _ensure(table, key, same, line_for):
    """Make ``key`` have one line whose value satisfies ``same``; keep an equal line as it is.

    Returns True when the table changed.  A new or rewritten line keeps the
    key's spelling from the file (Postfix matches keys case-insensitively).
    """
    entries = table.get_all(key)
    current = entries[0] if entries else None
    if current is not None and same(current.value):
        if len(entries) == 1:
            return False
        return table.set(key, current.raw)  # drop the duplicates, keep the effective line
    spelled = current.key if current is not None else key
    return table.set(key, line_for(spelled))


def _apply_relay(relaymap, e):
    key, action = e['key'], e['relay']
    if action == 'set':
        wanted = e['relay_value']
        return _ensure(relaymap, key, lambda value: value.strip().lower() == wanted.lower(),
                       lambda spelled: table_line(spelled, wanted))
    if action == 'exclude':
        return _ensure(relaymap, key, lambda value: value.strip() == '', optout_line)
    if action == 'unexclude':
        changed = False
        for entry in relaymap.get_all(key):
            if is_optout(entry):
                changed |= relaymap.remove_entry(entry)
        return changed
    if action == 'remove':
        return relaymap.remove(key)
    return False


def _apply_creds(sasl, e):
    key, action = e['key'], e['creds']
    if action == 'set':
        wanted = e['creds_value']
        return _ensure(sasl, key, lambda value: value.strip(' \t') == wanted,
                       lambda spelled: table_line(spelled, wanted))
    if action == 'remove':
        return sasl.remove(key)
    return False


def plan(cfg, params, entries):
    """Edit the tables of ``cfg`` to the desired state. Returns the result values."""
    relaymap = cfg.table('relaymap')
    sasl = cfg.table('sasl')
    created, updated, removed = [], [], []
    warnings = []

    for e in entries:
        key = e['key']
        if e['state'] == 'absent':
            gone = relaymap.remove(key)
            gone |= sasl.remove(key)
            if gone:
                removed.append(key)
            continue
        existed = relaymap.has(key) or sasl.has(key)
        touched = _apply_relay(relaymap, e) if e['kind'] == 'domain' else False
        touched |= _apply_creds(sasl, e)
        if touched:
            (updated if existed else created).append(key)

    if params.get('exclusive'):
        named = set(e['key'].lower() for e in entries)
        gone = set(key.lower() for key in removed)
        for table in (relaymap, sasl):
            for norm in table.keys():
                if norm in named:
                    continue
                spelled = table.get(norm).key
                table.remove(norm)
                if norm not in gone:
                    gone.add(norm)
                    removed.append(spelled)

    # Credentials of an opted-out domain would be offered to whatever server takes the mail.
    for e in entries:
        if e['state'] != 'present' or e['kind'] != 'domain':
            continue
        current = relaymap.get(e['key'])
        if current is not None and is_optout(current) and sasl.has(e['key']):
            warnings.append('%s: %s opts out of relaying but postfix-sasl-password.cf still has credentials for '
                            'it, which Postfix would offer to the destination servers; remove them with '
                            'username: ""' % (e['field']('domain'), e['key']))

    # The SASL file holds plain-text passwords: 0600 even when it existed with a wider mode.
    return dict(created=created, updated=updated, removed=removed, _warnings=warnings,
                _mode_fixes=[(SASL_RELPATH, SASL_MODE)])
