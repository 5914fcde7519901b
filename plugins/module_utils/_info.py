# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_info``: what the config dir holds, how it differs from a desired state, and live data.

Read-only: the config dir is opened as a check-mode :class:`ConfigDir` (a shared lock when a lock file is
there, nothing written, not even the lock file), and every file is read with the parser of the state module
that writes it (``_accounts``, ``_aliases``, ``_relay``, ``_dkim``, ``_masters``, ``_sieve``, ``_fetchmail``,
``_config``); this module has none of its own.
The parsers of the sections other than accounts and aliases are imported by the functions that need them, so that
``gather: [accounts]`` does not load (and, inside an AnsiballZ payload, compile) DKIM's, Postfix relays' and the
config files' code and the ``cryptography`` library (ansible-core still packs them: its module finder sees imports
anywhere in a file).

Sections are registered in :data:`SECTIONS`: ``name -> (gather(cfg), drift(cfg, items, options))``.  A module
that brings a new file adds its section here with a reader that lives next to its own parser (as master users,
Sieve scripts and fetchmail/getmail do).
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.dms.mailserver.plugins.module_utils import _accounts, _aliases
from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import HashError, can_verify, run_jobs, split_stored

CONTAINER_CONFIG_DIR = '/tmp/docker-mailserver'
# DMS's change detector (helpers/change-detection.sh): the sums of the files it last applied, and the table
# files it watches (plus every file under rspamd/ when ENABLE_RSPAMD=1).
CHKSUM_FILE = '/tmp/docker-mailserver-config-chksum'
WATCHED = ('postfix-accounts.cf', 'postfix-virtual.cf', 'postfix-regexp.cf', 'postfix-aliases.cf',
           'postfix-relaymap.cf', 'postfix-sasl-password.cf', 'dovecot-quotas.cf', 'dovecot-masters.cf')


def _drift():
    return dict(missing=[], extra=[], different=[])


def _prefixed(exc):
    return v.ValidationError('compare_to.%s' % exc)


# -- accounts ----------------------------------------------------------------------------------


def gather_accounts(cfg):
    return _accounts.read_accounts(cfg)


def drift_accounts(cfg, items, options):
    try:
        entries, dummy = _accounts.normalize(dict(accounts=items, state='present', exclusive=False))
    except v.ValidationError as exc:
        raise _prefixed(exc)
    accounts = cfg.table('accounts')
    access = dict((direction, cfg.table(name)) for direction, name in _accounts.RESTRICT_FILES)
    quotas = cfg.table('quotas')
    out = _drift()
    wanted = set()
    verify, verify_owner = [], []
    for e in entries:
        address = e['address']
        existing = accounts.get(address)
        if e['state'] == 'absent':
            if existing is not None:
                out['extra'].append(address)
            continue
        wanted.add(address)
        if existing is None:
            out['missing'].append(address)
            continue
        fields = []
        stored = existing.value.split('|', 1)[0].strip()
        if e['scheme'] is not None and split_stored(stored)[0] != e['scheme']:
            fields.append('scheme')
        if e['quota'] is not None:
            own = quotas.get(address)
            if (own.value if own is not None else '') != e['quota']:
                fields.append('quota')
        if e['restrict'] is not None and _accounts.restrictions_of(access, address) != e['restrict']:
            fields.append('restrict')
        if e['password_hash'] is not None and e['password_hash'] != stored:
            fields.append('password')
        elif e['password'] is not None and options['verify_passwords']:
            if can_verify(stored):
                verify.append(('verify', e['password'], stored))
                verify_owner.append((address, fields))
            else:
                fields.append('password')
        out['different'].append(dict(address=address, fields=fields))
    if verify:
        try:
            results = run_jobs(verify)
        except HashError as exc:
            raise v.ValidationError(str(exc))
        for (dummy, fields), ok in zip(verify_owner, results):
            if not ok:
                fields.append('password')
    out['different'] = [d for d in out['different'] if d['fields']]
    out['extra'].extend(accounts.get(key).key for key in accounts.keys() if key not in wanted and '@' in key
                        and key not in [a.lower() for a in out['extra']])
    return out


# -- aliases -------------------------------------------------------------------------------------


def gather_aliases(cfg):
    return _aliases.read_aliases(cfg.table('accounts'), cfg.table('virtual'), cfg.table('regexp'))


def drift_aliases(cfg, items, options):
    try:
        entries, dummy = _aliases.normalize(dict(aliases=items, state='present', append=False, exclusive=False))
    except v.ValidationError as exc:
        raise _prefixed(exc)
    accounts = cfg.table('accounts')
    tables = {'virtual': cfg.table('virtual'), 'regexp': cfg.table('regexp')}
    out = _drift()
    wanted = set()
    for e in entries:
        table = tables[e['type']]
        existing = table.get(e['key'])
        ident = dict(type=e['type'], alias=e['key'])
        if e['state'] == 'absent':
            if existing is None:
                continue
            if e['recipients']:
                have = set(r.lower() for r in _aliases.split_recipients(existing.value))
                if any(r.lower() in have for r in e['recipients']):
                    out['different'].append(dict(ident, fields=['recipients']))
            else:
                out['extra'].append(ident)
            continue
        wanted.add((e['type'], table.norm(e['key'])))
        if existing is None:
            out['missing'].append(ident)
            continue
        current = [r.lower() for r in _aliases.split_recipients(existing.value)]
        given = [r.lower() for r in e['recipients']]
        same = set(given) <= set(current) if e['append'] else current == given
        if not same:
            out['different'].append(dict(ident, fields=['recipients']))
    # Regexp aliases are tried in file order: listed ones out of the listed order differ in their order.
    listed = [e['key'] for e in entries if e['type'] == 'regexp' and e['state'] == 'present'
              and tables['regexp'].has(e['key'])]
    positions = [tables['regexp'].index_of(key) for key in listed]
    for index in range(1, len(listed)):
        if positions[index] < positions[index - 1]:
            item = next((d for d in out['different'] if d['type'] == 'regexp' and d['alias'] == listed[index]),
                        None)
            if item is None:
                out['different'].append(dict(type='regexp', alias=listed[index], fields=['order']))
            else:
                item['fields'].append('order')
    for kind, table in tables.items():
        for norm in table.keys():
            if (kind, norm) in wanted:
                continue
            entry = table.get(norm)
            if kind == 'virtual' and ('@' not in norm or (_aliases.is_self_alias(entry) and accounts.has(norm))):
                continue    # local-only aliases and self-aliases are not dms_alias's to list
            ident = dict(type=kind, alias=entry.key)
            if ident not in out['extra']:
                out['extra'].append(ident)
    return out


# -- relays --------------------------------------------------------------------------------------


def gather_relays(cfg):
    from ansible_collections.dms.mailserver.plugins.module_utils import _relay
    return _relay.read_relays(cfg.table('relaymap'), cfg.table('sasl'))


def drift_relays(cfg, items, options):
    from ansible_collections.dms.mailserver.plugins.module_utils import _relay
    try:
        entries, dummy = _relay.normalize(dict(relays=items, state='present', exclusive=True))
    except v.ValidationError as exc:
        raise _prefixed(exc)
    relaymap, sasl = cfg.table('relaymap'), cfg.table('sasl')
    out = _drift()
    named = set()
    for e in entries:
        key = e['key']
        named.add(key.lower())
        present = relaymap.has(key) or sasl.has(key)
        if e['state'] == 'absent':
            if present:
                out['extra'].append(key)
            continue
        if not present and (e['relay'] in ('set', 'exclude') or e['creds'] == 'set'):
            out['missing'].append(key)
            continue
        fields = []
        line = relaymap.get(key)
        if e['relay'] == 'set' and (line is None or line.value.strip().lower() != e['relay_value'].lower()):
            fields.append('host')
        elif e['relay'] == 'exclude' and (line is None or not _relay.is_optout(line)):
            fields.append('exclude')
        elif e['relay'] == 'unexclude' and any(_relay.is_optout(item) for item in relaymap.get_all(key)):
            fields.append('exclude')
        elif e['relay'] == 'remove' and line is not None:
            fields.append('host')
        creds = sasl.get(key)
        if e['creds'] == 'set':
            user = e['creds_value'].split(':', 1)[0]
            current = creds.value.strip(' \t') if creds is not None else None
            if current is None or current.split(':', 1)[0] != user:
                fields.append('username')
            elif options['verify_passwords'] and current != e['creds_value']:
                fields.append('password')
        elif e['creds'] == 'remove' and creds is not None:
            fields.append('credentials')
        if fields:
            out['different'].append(dict(key=key, fields=fields))
    for table in (relaymap, sasl):
        for norm in table.keys():
            spelled = table.get(norm).key
            if norm not in named and spelled not in out['extra']:
                out['extra'].append(spelled)
    return out


# -- dkim ------------------------------------------------------------------------------------------

DKIM_FIELDS = ('domain', 'domains', 'selector', 'backend', 'key_type', 'key_size')
# Options of dms_dkim (and keys of the role's dms_dkim items) that say how to act, not what the state is.
DKIM_IGNORED = ('regenerate', 'key_owner', 'key_group', 'in_use')


def gather_dkim(cfg):
    from ansible_collections.dms.mailserver.plugins.module_utils import _dkim
    return _dkim.read_keys(cfg)


def drift_dkim(cfg, items, options):
    from ansible_collections.dms.mailserver.plugins.module_utils import _dkim
    records = _dkim.read_keys(cfg)
    have = dict(((r['backend'], r['domain'], r['selector']), r) for r in records)
    out = _drift()
    wanted = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise v.ValidationError('compare_to.dkim[%d]: must be a mapping like the options of dms_dkim' % index)
        for name in item:
            if name not in DKIM_FIELDS + DKIM_IGNORED + ('state',):
                raise v.ValidationError('compare_to.dkim[%d].%s: is not an option dms_info compares (%s)'
                                        % (index, name, ', '.join(DKIM_FIELDS + ('state',))))
        params = dict(domain=item.get('domain'), domains=item.get('domains'), selector=item.get('selector') or 'mail',
                      backend=item.get('backend') or 'opendkim', key_type=item.get('key_type'),
                      key_size=item.get('key_size'), state=item.get('state') or 'present', regenerate='never')
        try:
            entries, opts, dummy = _dkim.normalize(params)
        except v.ValidationError as exc:
            raise v.ValidationError('compare_to.dkim[%d].%s' % (index, exc))
        for e in entries:
            ident = (opts['backend'], e['domain'], e['selector'])
            name = dict(domain=e['domain'], selector=e['selector'], backend=opts['backend'])
            record = have.get(ident)
            if opts['state'] == 'absent':
                if record is not None:
                    out['extra'].append(name)
                continue
            wanted.add(ident)
            if record is None or record['value'] is None:
                out['missing'].append(name)
            elif record['key_type'] != opts['key_type']:
                out['different'].append(dict(name, fields=['key_type']))
            elif opts['key_type'] == 'rsa' and record['key_size'] != opts['key_size']:
                out['different'].append(dict(name, fields=['key_size']))
    for ident, record in have.items():
        name = dict(domain=record['domain'], selector=record['selector'], backend=record['backend'])
        if ident not in wanted and name not in out['extra']:
            out['extra'].append(name)
    return out


# -- config ------------------------------------------------------------------------------------------

CONFIG_FIELDS = ('file', 'settings', 'services', 'sections', 'content', 'state', 'exclusive', 'force',
                 'release_line')
CONFIG_IGNORED = ('mode', 'no_log_content', 'backup', 'lock_timeout')


def gather_config(cfg):
    from ansible_collections.dms.mailserver.plugins.module_utils import _config
    return _config.read_files(cfg)


def drift_config(cfg, items, options):
    from ansible_collections.dms.mailserver.plugins.module_utils import _config
    out = _drift()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise v.ValidationError('compare_to.config[%d]: must be a mapping like the options of dms_config'
                                    % index)
        for name in item:
            if name not in CONFIG_FIELDS + CONFIG_IGNORED:
                raise v.ValidationError('compare_to.config[%d].%s: is not an option dms_info compares (%s)'
                                        % (index, name, ', '.join(CONFIG_FIELDS)))
        try:
            request, dummy = _config.normalize(dict((k, val) for k, val in item.items() if k not in CONFIG_IGNORED))
        except v.ValidationError as exc:
            raise v.ValidationError('compare_to.config[%d].%s' % (index, exc))
        relpath, kind = request['relpath'], request['kind']
        text = cfg.read(relpath)
        if request['state'] == 'absent' and not (request['settings'] or request['services'] or request['sections']):
            if text is not None:
                out['extra'].append(dict(file=relpath))
            continue
        if text is None:
            if request['state'] == 'present':
                out['missing'].append(dict(file=relpath))
            continue
        if kind in ('content', 'rspamd_override'):
            if text != request['content']:
                out['different'].append(dict(file=relpath, fields=['content']))
            continue
        try:
            editor = _config._editor(kind, text)  # pylint: disable=protected-access
        except v.ValidationError as exc:
            raise v.ValidationError('compare_to.config[%d].%s' % (index, exc))
        present_keys = set(editor.keys())
        present_sections = set(editor.sections()) if kind == 'dovecot' else set()
        keys, headers = set(), set()
        for key, rendered, dummy in request['settings'] or request['services'] or []:
            if rendered is None:
                if key in present_keys:
                    out['extra'].append(dict(file=relpath, key=key))
                continue
            keys.add(key)
            if key not in present_keys:
                out['missing'].append(dict(file=relpath, key=key))
            elif editor.set(key, rendered):
                out['different'].append(dict(file=relpath, key=key, fields=['value']))
        for header, lines, dummy in request['sections'] or []:
            if lines is None:
                if header in present_sections:
                    out['extra'].append(dict(file=relpath, section=header))
                continue
            headers.add(header)
            if header not in present_sections:
                out['missing'].append(dict(file=relpath, section=header))
            elif editor.set_section(header, lines):
                out['different'].append(dict(file=relpath, section=header, fields=['value']))
        if request['exclusive']:
            out['extra'].extend(dict(file=relpath, key=key) for key in sorted(present_keys - keys))
            out['extra'].extend(dict(file=relpath, section=h) for h in sorted(present_sections - headers))
    return out


# -- masters ---------------------------------------------------------------------------------------


def gather_masters(cfg):
    from ansible_collections.dms.mailserver.plugins.module_utils import _masters
    return _masters.read_masters(cfg)


def drift_masters(cfg, items, options):
    from ansible_collections.dms.mailserver.plugins.module_utils import _masters
    try:
        entries, dummy = _masters.normalize(dict(masters=items, state='present', exclusive=False))
    except v.ValidationError as exc:
        raise _prefixed(exc)
    masters = cfg.table('masters')
    out = _drift()
    wanted = set()
    verify, verify_owner = [], []
    for e in entries:
        name = e['name']
        existing = masters.get(name)
        if e['state'] == 'absent':
            if existing is not None:
                out['extra'].append(existing.key)
            continue
        wanted.add(name)
        if existing is None:
            out['missing'].append(name)
            continue
        fields = []
        stored = existing.value.split('|', 1)[0].strip()
        if e['scheme'] is not None and split_stored(stored)[0] != e['scheme']:
            fields.append('scheme')
        if e['password_hash'] is not None and e['password_hash'] != stored:
            fields.append('password')
        elif e['password'] is not None and options['verify_passwords']:
            if can_verify(stored):
                verify.append(('verify', e['password'], stored))
                verify_owner.append(fields)
            else:
                fields.append('password')
        out['different'].append(dict(name=existing.key, fields=fields))
    if verify:
        try:
            results = run_jobs(verify)
        except HashError as exc:
            raise v.ValidationError(str(exc))
        for fields, ok in zip(verify_owner, results):
            if not ok:
                fields.append('password')
    out['different'] = [d for d in out['different'] if d['fields']]
    extra = [masters.norm(name) for name in out['extra']]
    out['extra'].extend(masters.get(norm).key for norm in masters.keys() if norm not in wanted and norm not in extra)
    return out


# -- sieve -----------------------------------------------------------------------------------------


def gather_sieve(cfg):
    from ansible_collections.dms.mailserver.plugins.module_utils import _sieve
    return _sieve.read_scripts(cfg)


def drift_sieve(cfg, items, options):
    """Scripts by identity (a user's address, or the global scope); ``script`` differs when the text does."""
    from ansible_collections.dms.mailserver.plugins.module_utils import _sieve
    try:
        entries, dummy = _sieve.normalize(dict(scripts=items, state='present', exclusive=False, validate='never'))
    except v.ValidationError as exc:
        message = str(exc)   # dms_sieve's list is "scripts"; here it is the section "sieve"
        raise _prefixed('sieve' + message[len('scripts'):] if message.startswith('scripts[') else message)
    accounts = cfg.table('accounts')
    out = _drift()
    named = set()
    for e in entries:
        if e['kind'] == 'user':
            account = accounts.get(e['name'])
            relpath = (account.key if account is not None else e['name']) + _sieve.SUFFIX
            ident = dict(address=e['name'])
        else:
            relpath = e['relpath']
            ident = dict(scope=e['name'])
        named.add(relpath)
        text = cfg.read(relpath)
        # A user's neutral script is what state=absent leaves: no filter.
        active = text is not None and not (e['kind'] == 'user' and text == _sieve.NEUTRAL)
        if e['state'] == 'absent':
            if active:
                out['extra'].append(ident)
        elif not active:
            out['missing'].append(ident)
        elif text != e['text']:
            out['different'].append(dict(ident, fields=['script']))
    for item in _sieve.read_scripts(cfg):
        if item['kind'] == 'user':
            if item['address'] + _sieve.SUFFIX not in named and not item['neutral']:
                out['extra'].append(dict(address=item['address']))
        elif item['scope'] + _sieve.SUFFIX not in named:
            out['extra'].append(dict(scope=item['scope']))
    return out


# -- fetches -----------------------------------------------------------------------------------------

FETCH_FIELDS = ('fetcher', 'protocol', 'port', 'target', 'ssl', 'keep', 'folders')


def gather_fetches(cfg):
    from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmail
    return _fetchmail.read_fetches(cfg)


def drift_fetches(cfg, items, options):
    """Remote mailboxes by identity (server and username, as dms_fetchmail); passwords only compared (never
    hashed) with verify_passwords."""
    from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmail
    try:
        entries, dummy = _fetchmail.normalize(dict(fetches=items, state='present', fetcher='fetchmail',
                                                   exclusive=False))
    except v.ValidationError as exc:
        raise _prefixed(exc)
    have = {}
    for item in _fetchmail.read_fetches(cfg):
        if 'error' in item:
            raise v.ValidationError('compare_to.fetches: %s cannot be read (%s); fix it first'
                                    % (item['file'], item['error']))
        have.setdefault(_fetchmail.entry_key(item['server'], item['username']).lower(), item)
    passwords = {}
    if options['verify_passwords'] and any(e.get('password') is not None for e in entries):
        passwords = _fetchmail_passwords(cfg, _fetchmail)
    out = _drift()
    named = set()
    for e in entries:
        norm = e['key'].lower()
        named.add(norm)
        item = have.get(norm)
        ident = dict(server=e['server'], username=e['username'])
        if e['state'] == 'absent':
            if item is not None:
                out['extra'].append(ident)
            continue
        if item is None:
            out['missing'].append(ident)
            continue
        want = dict((name, e[name]) for name in FETCH_FIELDS)
        if want['fetcher'] == 'getmail' and want['protocol'] == 'imap' and not want['folders']:
            want['folders'] = ['INBOX']     # what dms_fetchmail writes for getmail without folders
        fields = [name for name in FETCH_FIELDS if not (name == 'port' and want[name] is None)
                  and item.get(name) != want[name]]
        if e['password'] is not None and options['verify_passwords'] and passwords.get(norm) != e['password']:
            fields.append('password')
        if fields:
            out['different'].append(dict(ident, fields=fields))
    for norm, item in have.items():
        if norm not in named:
            out['extra'].append(dict(server=item['server'], username=item['username']))
    return out


def _fetchmail_passwords(cfg, _fetchmail):
    """{server/username (lower): password} from the files, only for verify_passwords; never returned."""
    out = {}
    text = cfg.read(_fetchmail.FETCHMAIL_RELPATH)
    if text is not None:
        dummy, statements = _fetchmail.rc.parse(text)
        for st in statements:
            if st.kind == 'poll' and st.server is not None and len(st.users) == 1:
                out.setdefault(_fetchmail.entry_key(st.server, st.users[0]).lower(), st.password())
    found, dummy = _fetchmail._read_getmail(cfg)  # pylint: disable=protected-access
    for norm, items in found.items():
        out.setdefault(norm, items[0][1])
    return out


# -- the registry --------------------------------------------------------------------------------

# name -> (gather(cfg), drift(cfg, items, options)).
SECTIONS = {
    'accounts': (gather_accounts, drift_accounts),
    'aliases': (gather_aliases, drift_aliases),
    'relays': (gather_relays, drift_relays),
    'dkim': (gather_dkim, drift_dkim),
    'masters': (gather_masters, drift_masters),
    'sieve': (gather_sieve, drift_sieve),
    'fetches': (gather_fetches, drift_fetches),
    'config': (gather_config, drift_config),
}


def run(cfg, params):
    """The result values of one dms_info run (without live data)."""
    gather = list(SECTIONS) if params.get('gather') is None else params['gather']
    for name in gather:
        if name not in SECTIONS:
            raise v.ValidationError('gather: %r is not a section (%s)' % (name, ', '.join(SECTIONS)))
    compare_to = params.get('compare_to')
    if compare_to is not None:
        if not isinstance(compare_to, dict):
            raise v.ValidationError('compare_to: must be a mapping of sections (%s) to lists' % ', '.join(SECTIONS))
        for name, items in compare_to.items():
            if name not in SECTIONS:
                raise v.ValidationError('compare_to: %r is not a section (%s)' % (name, ', '.join(SECTIONS)))
            if not isinstance(items, list):
                raise v.ValidationError('compare_to.%s: must be a list, as the module of that section takes' % name)
    result = dict(config_dir=cfg.path, config_dir_exists=cfg.exists, sections=list(gather))
    for name in gather:
        result[name] = SECTIONS[name][0](cfg)
    if compare_to is not None:
        options = dict(verify_passwords=bool(params.get('verify_passwords')))
        drift = {}
        for name, items in compare_to.items():
            drift[name] = SECTIONS[name][1](cfg, items, options)
        result['drift'] = drift
        result['in_sync'] = not any(d[kind] for d in drift.values() for kind in ('missing', 'extra', 'different'))
    return result


# -- live data ------------------------------------------------------------------------------------


class LiveError(Exception):
    pass


def _tab_rows(text):
    """Rows of ``doveadm -f tab`` output as dicts keyed by its header."""
    lines = [line for line in text.split('\n') if line.strip()]
    if not lines:
        return []
    header = lines[0].split('\t')
    return [dict(zip(header, line.split('\t'))) for line in lines[1:]]


def _number(value):
    return int(value) if value is not None and value.strip().isdigit() else None


def parse_quota(text):
    """``doveadm -f tab quota get -A`` -> {user: {used_kib, limit_kib, percent, messages, message_limit}}."""
    out = {}
    for row in _tab_rows(text):
        user = row.get('Username')
        if not user:
            continue
        item = out.setdefault(user.lower(), {})
        if row.get('Type') == 'STORAGE':
            item.update(used_kib=_number(row.get('Value')), limit_kib=_number(row.get('Limit')),
                        percent=_number(row.get('%')))
        elif row.get('Type') == 'MESSAGE':
            item.update(messages=_number(row.get('Value')), message_limit=_number(row.get('Limit')))
    return out


def parse_mailbox_status(text):
    """``doveadm -f tab mailbox status -A -t 'messages vsize' '*'`` -> {user: {used_kib, messages}}."""
    out = {}
    for row in _tab_rows(text):
        user = row.get('Username')
        if user:
            vsize = _number(row.get('vsize'))
            out[user.lower()] = dict(used_kib=None if vsize is None else (vsize + 1023) // 1024, limit_kib=None,
                                     percent=None, messages=_number(row.get('messages')), message_limit=None)
    return out


def parse_checksums(text):
    """DMS's checksum file (``sha512sum`` lines) -> {path: sum}."""
    out = {}
    for line in text.split('\n'):
        parts = line.split(None, 1)
        if len(parts) == 2:
            out[parts[1].strip().lstrip('*')] = parts[0]
    return out


def _local_sums(cfg, rspamd):
    sums = {}
    names = list(WATCHED)
    if rspamd:
        base = cfg.abspath('rspamd')
        for dirpath, dummy, filenames in os.walk(base):
            for name in filenames:
                names.append(os.path.relpath(os.path.join(dirpath, name), cfg.path))
    for relpath in names:
        path = cfg.abspath(relpath)
        if os.path.isfile(path):
            digest = hashlib.sha512()
            with open(path, 'rb') as handle:
                for block in iter(lambda: handle.read(1 << 20), b''):
                    digest.update(block)
            sums['%s/%s' % (CONTAINER_CONFIG_DIR, relpath)] = digest.hexdigest()
    return sums


def change_detector_state(cfg, checksum_text, rspamd):
    """Whether DMS's change detector has applied the config dir's current files, and which are pending."""
    applied = dict((path, digest) for path, digest in parse_checksums(checksum_text).items()
                   if path.startswith(CONTAINER_CONFIG_DIR + '/'))
    if not rspamd:
        applied = dict((p, d) for p, d in applied.items() if not p.startswith(CONTAINER_CONFIG_DIR + '/rspamd/'))
    current = _local_sums(cfg, rspamd)
    pending = sorted(path[len(CONTAINER_CONFIG_DIR) + 1:] for path in set(applied) | set(current)
                     if applied.get(path) != current.get(path))
    return dict(applied=not pending, pending=pending)


def live(cfg, exec_argv, accounts):
    """Live data through ``exec_argv(argv) -> (rc, stdout, stderr)``; argv lists only, no secret in any.

    Returns ``(live, usage)``: ``live`` has ``dms_release`` and ``change_detector``; ``usage`` maps each
    account (lower case) to its quota usage and message count.
    """
    def read(argv, what):
        rc, out, err = exec_argv(argv)
        if rc != 0:
            raise LiveError('%s failed (exit status %s): %s' % (what, rc, (err or out).strip()[:300]))
        return out

    def env(name):
        rc, out, dummy = exec_argv(['printenv', name])
        return out.strip() if rc == 0 else None

    result = dict(dms_release=env('DMS_RELEASE'))
    rspamd = env('ENABLE_RSPAMD') == '1'
    rc, text, err = exec_argv(['cat', CHKSUM_FILE])
    if rc == 0:
        result['change_detector'] = change_detector_state(cfg, text, rspamd)
    else:
        result['change_detector'] = dict(applied=None, pending=[],
                                         error='%s cannot be read: the container has not finished starting, or '
                                               'is not DMS' % CHKSUM_FILE)
    usage = {}
    if accounts:
        rc, text, err = exec_argv(['doveadm', '-f', 'tab', 'quota', 'get', '-A'])
        if rc == 0:
            usage = parse_quota(text)
            result['quota_source'] = 'doveadm quota get'
        else:
            # Quotas off (ENABLE_QUOTAS=0): no quota plugin; the mailbox sizes still tell the usage.
            text = read(['doveadm', '-f', 'tab', 'mailbox', 'status', '-A', '-t', 'messages vsize', '*'],
                        'doveadm mailbox status')
            usage = parse_mailbox_status(text)
            result['quota_source'] = 'doveadm mailbox status'
    return result, usage
