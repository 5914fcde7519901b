# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_fetchmail``: remote mailboxes DMS collects into local accounts.

Files (both read by DMS only at the first start of a container, contract §9):

``fetchmail.cf``
    fetchmail run-control statements (:mod:`_fetchmailrc`).  Each entry is one
    ``poll`` statement on one line.  Comments, ``set``/``defaults``
    statements and polls of other (server, user) pairs stay as they are.

``getmail/<id>.cf``
    one getmail6 rc file per entry (:mod:`_getmailrc`); other files of the
    directory and ``getmailrc_general.cf`` stay as they are.

An entry is identified by its remote ``server`` (case-insensitive) and its
remote ``username`` (exact), in either file; ``fetcher`` says which of the
two holds it, and an entry moved to the other fetcher leaves the first.
Every file that holds a password is written with mode 0600, and diffs show
passwords as ``<password #N masked>``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmailrc as rc
from ansible_collections.dms.mailserver.plugins.module_utils import _getmailrc as grc
from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._common import entries_of, item_path
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDirError, Masker

FETCHMAIL_RELPATH = 'fetchmail.cf'
MODE = 0o600
ENTRY_FIELDS = ('server', 'protocol', 'port', 'username', 'password', 'ssl', 'cleartext', 'keep', 'folders',
                'target', 'fetcher', 'state')
PROTOCOLS = ('pop3', 'imap')
FETCHERS = ('fetchmail', 'getmail')
# DMS's /etc/fetchmailrc_general, which it puts before fetchmail.cf.
DMS_FETCHMAIL_GENERAL = '# General options\n\nset daemon 300\nset syslog\n\n# Fetch rules\n\n'
_ID_UNSAFE = re.compile(r'[^A-Za-z0-9._@+-]')


def _fail(field, problem):
    raise v.ValidationError('%s: %s' % (field, problem))


def _text(value, field, what, max_len=512, secret=False):
    """A string a fetchmail or getmail line can carry: no line breaks or control characters, no white space at
    either end (getmail strips it).  The message never shows a secret."""
    if not isinstance(value, str):
        _fail(field, 'must be a string')
    if not value:
        _fail(field, 'must not be empty')
    shown = '' if secret else '%r ' % (value if len(value) <= 80 else value[:77] + '...')
    if len(value) > max_len:
        _fail(field, '%sis longer than %d characters' % (shown, max_len))
    for ch in value:
        if ch in '\r\n':
            _fail(field, '%scontains a line break (a trailing newline from a file lookup?); a line of %s cannot '
                         'carry it' % (shown, what))
        if ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f:
            _fail(field, '%scontains a control character (0x%02x), which %s cannot carry' % (shown, ord(ch), what))
    if value != value.strip():
        _fail(field, '%sbegins or ends with white space, which getmail strips and fetchmail users rarely mean'
                     % shown)
    return value


def _server(value, field):
    _text(value, field, 'fetchmail.cf', max_len=253)
    if value.startswith('[') and value.endswith(']'):
        _fail(field, '%r must be given without brackets' % value)
    if ':' in value:
        try:
            return v.host(value, field)
        except v.ValidationError:
            _fail(field, '%r contains ":" but is not an IPv6 address (give the port in port)' % value)
    return v.host(value, field)


def entry_key(server, username):
    """The entry's name in results and messages: ``server/username``."""
    return '%s/%s' % (server.lower(), username)


def getmail_id(server, username):
    """The ``<id>`` of a new ``getmail/<id>.cf``: ``username@server`` with unsafe characters as ``_``.

    Never a path (no ``/``), never hidden (a leading ``.`` becomes ``_``: DMS's
    ``*.cf`` glob skips dot files), never DMS's ``getmailrc_general``.
    """
    ident = _ID_UNSAFE.sub('_', '%s@%s' % (username, server.lower()))
    if ident.startswith('.'):
        ident = '_' + ident[1:]
    if ident == 'getmailrc_general':
        ident += '_'
    return ident[:200]


def normalize(params):
    """Validate the options; return (entries, warnings). Raises ValidationError."""
    warnings = []
    list_option, raw_entries = entries_of(params, 'fetches', ENTRY_FIELDS, 'remote mailbox',
                                          defaults={'state': params.get('state'), 'fetcher': params.get('fetcher')})

    entries = []
    seen = {}
    for index, raw in raw_entries:
        def field(name, index=index):
            return item_path(params, list_option, index, name)
        entry = _normalize_entry(raw, field)
        norm = entry['key'].lower()
        if norm in seen:
            raise v.ValidationError('%s: %s is listed twice (also at %s)'
                                    % (field('username'), entry['key'], seen[norm]))
        seen[norm] = field('username')
        entries.append(entry)
    return entries, warnings


def _normalize_entry(raw, field):
    state, fetcher = raw['state'], raw['fetcher']
    if state not in ('present', 'absent'):
        _fail(field('state'), '%r is not a state: use present or absent' % (state,))
    if fetcher not in FETCHERS:
        _fail(field('fetcher'), '%r is not a fetcher: use fetchmail or getmail' % (fetcher,))
    if raw['server'] is None:
        _fail(field('server'), 'is required (the remote POP3 or IMAP server)')
    server = _server(raw['server'], field('server'))
    if raw['username'] is None:
        _fail(field('username'), 'is required (the user name on the remote server)')
    username = _text(raw['username'], field('username'), 'fetchmail.cf or a getmail file')
    entry = dict(state=state, fetcher=fetcher, server=server, username=username, field=field,
                 key=entry_key(server, username))
    if state == 'absent':
        for name in ('protocol', 'port', 'password', 'ssl', 'cleartext', 'keep', 'folders', 'target'):
            if raw[name] is not None:
                _fail(field(name), 'has no meaning with state=absent (the entry is found by server and username)')
        return entry

    protocol = raw['protocol'] if raw['protocol'] is not None else 'imap'
    if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
        _fail(field('protocol'), '%r is not a protocol: use pop3 or imap' % (protocol,))
    protocol = protocol.lower()
    port = None if raw['port'] is None else v.port(raw['port'], field('port'))
    password = raw['password']
    if password is not None:
        password = _text(password, field('password'), 'fetchmail.cf or a getmail file', max_len=1024, secret=True)
    if raw['target'] is None:
        _fail(field('target'), 'is required (the local DMS account that receives the mail)')
    target = v.address(raw['target'], field('target'))
    ssl = True if raw['ssl'] is None else raw['ssl']
    keep = True if raw['keep'] is None else raw['keep']
    if not isinstance(ssl, bool):
        _fail(field('ssl'), 'must be true or false')
    if not isinstance(keep, bool):
        _fail(field('keep'), 'must be true or false')
    cleartext = bool(raw['cleartext'])
    if cleartext and ssl:
        _fail(field('cleartext'), 'contradicts ssl=true (implicit TLS); set ssl: false as well')
    if fetcher == 'getmail' and not ssl and not cleartext:
        _fail(field('ssl'), 'false with fetcher=getmail logs in without any TLS (getmail has no STARTTLS); set '
                            'cleartext: true to accept that, or keep ssl: true')
    folders = raw['folders']
    if folders is not None:
        if not isinstance(folders, list):
            _fail(field('folders'), 'must be a list of folder names')
        if folders and protocol != 'imap':
            _fail(field('folders'), 'needs protocol=imap (POP3 has only the inbox)')
        folders = [_text(folder, '%s[%d]' % (field('folders'), i), 'fetchmail.cf or a getmail file')
                   for i, folder in enumerate(folders)]
        if len(set(folders)) != len(folders):
            _fail(field('folders'), 'names a folder twice')
    if fetcher == 'getmail' and not keep:
        _fail(field('keep'), 'false cannot be set per getmail file: DMS puts its [options] (delete = false) before '
                             'every file, and getmail refuses a second [options] section; change the base options '
                             'in getmail/getmailrc_general.cf (dms.mailserver.dms_config) instead')
    entry.update(protocol=protocol, port=port, password=password, target=target, ssl=ssl, cleartext=cleartext,
                 keep=keep, folders=folders or [])
    return entry


# -- reading the current state ---------------------------------------------------


class _FetchmailFile:
    """fetchmail.cf as lines and statements, edited by line ranges."""

    def __init__(self, text):
        self.original = text
        try:
            self.lines, self.statements = rc.parse(text or '')
        except rc.RcError as exc:
            raise ConfigDirError('%s: %s; fix the file by hand (fetchmail would not read it either)'
                                 % (FETCHMAIL_RELPATH, exc))
        self.replaced = {}   # index of a statement -> new line, or None (removed)
        self.appended = []
        self.changed = False

    def polls(self):
        return [(i, st) for i, st in enumerate(self.statements) if st.kind == 'poll' and st.server is not None]

    def find(self, server, username):
        """Indexes of the poll statements for (server, username)."""
        out = []
        for i, st in self.polls():
            if st.server.lower() == server.lower() and username in st.users and i not in self.replaced:
                out.append(i)
        return out

    def line_of(self, i):
        st = self.statements[i]
        return '\n'.join(self.lines[st.first:st.last + 1])

    def render(self):
        if not self.changed:
            return self.original
        out = []
        skip = {}
        for i, new in self.replaced.items():
            st = self.statements[i]
            skip[st.first] = (st.last, new)
        pos = 0
        while pos < len(self.lines):
            if pos in skip:
                last, new = skip[pos]
                if new is not None:
                    out.append(new)
                pos = last + 1
                continue
            out.append(self.lines[pos])
            pos += 1
        out.extend(self.appended)
        return ''.join(line + '\n' for line in out)


def _read_getmail(cfg):
    """``{key_lower: (relpath, password)}`` of the getmail files, plus the relpaths of files not understood."""
    found, unreadable = {}, []
    directory = cfg.abspath(grc.DIRECTORY)
    real_dir = os.path.realpath(directory)
    if os.path.isdir(real_dir):
        cfg._resolve(grc.DIRECTORY)  # refuses a getmail/ that leads outside config_dir
        for name in sorted(os.listdir(real_dir)):
            if not name.endswith('.cf') or name == grc.GENERAL_NAME or name.startswith('.'):
                continue
            relpath = '%s/%s' % (grc.DIRECTORY, name)
            text = cfg.read(relpath)
            if text is None:
                continue
            try:
                ident = grc.identity(text)
            except grc.RcError:
                ident = None
            if ident is None:
                unreadable.append(relpath)
                continue
            key = entry_key(ident[0], ident[1])
            found.setdefault(key.lower(), []).append((relpath, ident[2], key))
    return found, unreadable


def read_fetches(cfg):
    """The remote mailboxes of ``fetchmail.cf`` (file order) then of ``getmail/*.cf`` (file name order), never a
    password: ``fetcher``, ``file``, ``server``, ``username``, ``protocol``, ``port``, ``target``, ``ssl``,
    ``keep``, ``folders`` and ``password_set``.  A file that cannot be read is an item with ``file`` and
    ``error`` (what the state module would refuse), not a failure."""
    out = []
    text = cfg.read(FETCHMAIL_RELPATH)
    if text is not None:
        try:
            dummy, statements = rc.parse(text)
        except rc.RcError as exc:
            out.append(dict(fetcher='fetchmail', file=FETCHMAIL_RELPATH, error=str(exc)))
        else:
            out.extend(dict(poll, fetcher='fetchmail', file=FETCHMAIL_RELPATH) for poll in rc.read_polls(statements))
    found, unreadable = _read_getmail(cfg)
    base = cfg.read('%s/%s' % (grc.DIRECTORY, grc.GENERAL_NAME)) or grc.DMS_BASE_OPTIONS
    relpaths = set(item[0] for items in found.values() for item in items)
    for relpath in sorted(relpaths | set(unreadable)):
        if relpath not in relpaths:
            out.append(dict(fetcher='getmail', file=relpath,
                            error='getmail cannot read it, or it has no [retriever] server and username'))
            continue
        try:
            item = grc.describe(cfg.read(relpath), base)
        except grc.RcError as exc:
            out.append(dict(fetcher='getmail', file=relpath, error=str(exc)))
            continue
        out.append(dict(item, fetcher='getmail', file=relpath))
    return out


# -- planning --------------------------------------------------------------------


def _check_round_trip(line, e, password):
    """The collection's own reading of a written statement must give back what was asked (always checked, also
    where fetchmail is not installed)."""
    try:
        dummy, statements = rc.parse(line + '\n')
    except rc.RcError as exc:
        raise ConfigDirError('fetchmail.cf: the statement for %s does not read back (%s)' % (e['key'], exc))
    if (len(statements) != 1 or statements[0].server != e['server'] or statements[0].users != [e['username']]
            or statements[0].password() != password):
        raise ConfigDirError('fetchmail.cf: the statement for %s does not read back as written' % e['key'])


def _passwords(text):
    """Every password of a fetchmailrc text (longest first), for scrubbing messages."""
    found = set()
    try:
        for start, end in rc.password_spans(text):
            raw = text[start:end]
            found.add(rc.unescape(raw[1:-1] if raw[:1] in '\'"' else raw))
            found.add(raw)
    except rc.RcError:
        pass
    return sorted((secret for secret in found if secret), key=len, reverse=True)


def validate_fetchmail(text, binary, run=None):
    """Let fetchmail read DMS's combined rc (general options + fetchmail.cf) from a private scratch copy.

    Returns None when fetchmail accepts it, else its error lines.  ``run`` is
    subprocess.run (replaceable in tests).  The copy lives in a 0700 temp
    directory, is 0600 and is removed at once; the password never reaches a
    command line.
    """
    run = run or subprocess.run
    scratch = tempfile.mkdtemp(prefix='dms-fetchmail-')
    try:
        path = os.path.join(scratch, 'fetchmailrc')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8', errors='surrogateescape') as handle:
            handle.write(DMS_FETCHMAIL_GENERAL + text)
        env = dict(os.environ, FETCHMAILHOME=scratch, HOME=scratch, LC_ALL='C')
        proc = run([binary, '--configdump', '--nosyslog', '-f', path], env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=60)
        if proc.returncode == 0:
            return None
        err = proc.stderr.decode('utf-8', 'replace') if isinstance(proc.stderr, bytes) else (proc.stderr or '')
        # fetchmail may quote a token of the file: no password of it (also those read on disk) is shown.
        for secret in _passwords(text):
            err = err.replace(secret, '********')
        lines = [line for line in err.splitlines() if line.strip() and 'Running as root' not in line]
        return lines or ['fetchmail exited with status %d' % proc.returncode]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def plan(cfg, params, entries, fetchmail_binary=None, run=None):
    """Edit fetchmail.cf and getmail/*.cf of ``cfg`` to the desired state. Returns the result values."""
    accounts = cfg.table('accounts')
    fm = _FetchmailFile(cfg.read(FETCHMAIL_RELPATH))
    gm, unreadable = _read_getmail(cfg)
    gm_new = {}        # relpath -> text (None = remove)
    created, updated, removed = [], [], []
    warnings = []
    gm_managed = []

    for e in entries:
        key, field = e['key'], e['field']
        fm_found = fm.find(e['server'], e['username'])
        for i in fm_found:
            st = fm.statements[i]
            if st.shared:
                _fail(field('server'), '%s is in a line of fetchmail.cf that holds another statement too (line %d); '
                                       'split it by hand first' % (key, st.first + 1))
            if len(set(st.users)) > 1:
                _fail(field('username'), '%s is in a poll statement of fetchmail.cf with several users (line %d); '
                                         'split it into one statement per user by hand first' % (key, st.first + 1))
        gm_found = [item for item in gm.get(key.lower(), []) if item[0] not in gm_new]
        existed = bool(fm_found or gm_found)
        if e['state'] == 'absent':
            for i in fm_found:
                fm.replaced[i] = None
                fm.changed = True
            for item in gm_found:
                gm_new[item[0]] = None
            if existed:
                removed.append(key)
            continue

        if not accounts.has(e['target']):
            _fail(field('target'), '%r is not an account in postfix-accounts.cf; fetched mail would have nowhere '
                                   'to go (create it with dms.mailserver.dms_account first)' % e['target'])
        password = e['password']
        if password is None:
            current = [fm.statements[i].password() for i in fm_found] + [item[1] for item in gm_found]
            current = [pw for pw in current if pw]
            if not current:
                _fail(field('password'), 'is required to create %s (it has no password yet)' % key)
            password = current[0]

        touched = False
        if e['fetcher'] == 'fetchmail':
            line = rc.render_poll(e['server'], e['protocol'], e['port'], e['username'], password, e['target'],
                                  e['ssl'], e['keep'], e['folders'], e['cleartext'])
            _check_round_trip(line, e, password)
            if fm_found:
                first = fm_found[0]
                if fm.line_of(first) != line:
                    fm.replaced[first] = line
                    fm.changed = touched = True
                for i in fm_found[1:]:
                    fm.replaced[i] = None
                    fm.changed = touched = True
            else:
                fm.appended.append(line)
                fm.changed = touched = True
            for item in gm_found:
                gm_new[item[0]] = None
                touched = True
        else:
            text = grc.render(e['protocol'], e['ssl'], e['server'], e['port'], e['username'], password,
                              e['folders'], e['target'])
            try:
                grc.check_combined(text)
            except grc.RcError as exc:  # a bug of the writer, never the user's input
                raise ConfigDirError('getmail file for %s: getmail would not read it: %s' % (key, exc))
            if gm_found:
                relpath = gm_found[0][0]
                others = gm_found[1:]
            else:
                relpath = '%s/%s.cf' % (grc.DIRECTORY, getmail_id(e['server'], e['username']))
                others = []
                if cfg.read(relpath) is not None or relpath in gm_new:
                    _fail(field('username'), '%s would be written to %s, which holds another configuration; '
                                             'rename or remove that file' % (key, relpath))
            if cfg.read(relpath) != text:
                touched = True
            gm_new[relpath] = text
            for item in others:
                gm_new[item[0]] = None
                touched = True
            gm_managed.append(relpath)
            for i in fm_found:
                fm.replaced[i] = None
                fm.changed = touched = True
        if touched:
            (updated if existed else created).append(key)

    if params.get('exclusive'):
        named = set(e['key'].lower() for e in entries)
        for i, st in fm.polls():
            if i in fm.replaced or any(entry_key(st.server, user).lower() in named for user in st.users):
                continue
            if st.shared:
                _fail('exclusive', 'fetchmail.cf line %d holds more than one statement; split it by hand first'
                      % (st.first + 1))
            fm.replaced[i] = None
            fm.changed = True
            removed.append(entry_key(st.server, st.users[0]) if st.users else st.server)
        for norm, items in sorted(gm.items()):
            if norm in named:
                continue
            for relpath, dummy, key in items:
                if relpath not in gm_new:
                    gm_new[relpath] = None
                    removed.append(key)
        for relpath in unreadable:
            gm_new[relpath] = None
            removed.append(relpath)
    elif unreadable:
        warnings.append('getmail files without a [retriever] server and username (left as they are): %s'
                        % ', '.join(unreadable))

    fm_text = fm.render()
    validated = []
    if fm.changed:
        if fm_text.strip() == '' and cfg.read(FETCHMAIL_RELPATH) is None:
            fm_text = None
        elif fetchmail_binary and fm_text:
            errors = validate_fetchmail(fm_text, fetchmail_binary, run)
            if errors:
                raise ConfigDirError('fetchmail.cf: fetchmail refuses the result, nothing was written: %s'
                                     % '; '.join(errors))
            validated.append(FETCHMAIL_RELPATH)

    masker = Masker()

    def token(secret):
        return masker.token(secret, 'password')

    def stage(relpath, text, masker_func):
        before = cfg.read(relpath)
        cfg.stage(relpath, text, MODE, True,
                  diff_before=masker_func(before, token) if before is not None else '',
                  diff_after=masker_func(text, token) if text is not None else '')

    if fm.changed:
        stage(FETCHMAIL_RELPATH, fm_text, rc.mask)
    for relpath in sorted(gm_new):
        stage(relpath, gm_new[relpath], grc.mask)

    # Files with passwords are 0600 even when they existed with a wider mode.
    mode_fixes = []
    if cfg.read(FETCHMAIL_RELPATH) is not None:
        mode_fixes.append((FETCHMAIL_RELPATH, MODE))
    for relpath in gm_managed:
        if cfg.read(relpath) is not None and gm_new.get(relpath) is not None:
            mode_fixes.append((relpath, MODE))
    return dict(created=created, updated=updated, removed=removed, validated=validated, _warnings=warnings,
                _mode_fixes=mode_fixes)
