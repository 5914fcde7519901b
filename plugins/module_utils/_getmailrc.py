# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The getmail6 rc format of DMS's ``getmail/<id>.cf`` files: read, write, check, mask.

getmail reads its rc file with Python's ``RawConfigParser`` (strict: a section
or option given twice is an error; no ``%`` interpolation; a value is stripped
of surrounding white space; a line that begins with white space continues the
value above it; ``#`` and ``;`` begin a comment only at the start of a line).
Tuple options (``mailboxes``, ``arguments``) are Python expressions that
getmail evaluates, so their strings are written as Python string literals
(:func:`py_string`).

DMS builds ``/etc/getmailrc.d/<id>`` from its base ``[options]`` (or
``getmail/getmailrc_general.cf``) followed by the file, so a file must not have
an ``[options]`` section of its own: the concatenation would hold it twice,
which getmail refuses.  The base keeps mail on the server (``delete =
false``).
"""

from __future__ import annotations

import ast
import configparser
import re

GENERAL_NAME = 'getmailrc_general.cf'
DIRECTORY = 'getmail'
DELIVER = '/usr/lib/dovecot/deliver'
# DMS's base options (target/getmail/getmailrc_general), used to check a file as DMS will combine it.
DMS_BASE_OPTIONS = ('[options]\nverbose = 0\nread_all = false\ndelete = false\nmax_messages_per_session = 500\n'
                    'received = false\ndelivered_to = false\nmessage_log_syslog = true\n\n')
RETRIEVERS = {
    ('pop3', False): 'SimplePOP3Retriever',
    ('pop3', True): 'SimplePOP3SSLRetriever',
    ('imap', False): 'SimpleIMAPRetriever',
    ('imap', True): 'SimpleIMAPSSLRetriever',
}
_PASSWORD_LINE = re.compile(r'^(\s*password\s*[=:]\s*)(.*)$', re.IGNORECASE)


class RcError(ValueError):
    """A file getmail would not read."""


def py_string(value):
    """A double-quoted Python string literal for ``value`` (getmail evaluates tuple options)."""
    return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'


def render(protocol, ssl, server, port, username, password, folders, target):
    """The text of one ``getmail/<id>.cf`` file, in the layout of DMS's getmail documentation."""
    lines = [
        '# Written by dms.mailserver.dms_fetchmail; DMS prepends its [options] (getmailrc_general).',
        '[retriever]',
        'type = %s' % RETRIEVERS[(protocol, ssl)],
        'server = %s' % server,
    ]
    if port is not None:
        lines.append('port = %d' % port)
    lines += ['username = %s' % username, 'password = %s' % password]
    if protocol == 'imap':
        lines.append('mailboxes = (%s,)' % ', '.join(py_string(folder) for folder in (folders or ['INBOX'])))
    lines += [
        '',
        '[destination]',
        'type = MDA_external',
        'path = %s' % DELIVER,
        'allow_root_commands = true',
        'arguments = ("-d", %s)' % py_string(target),
    ]
    return '\n'.join(lines) + '\n'


def read(text):
    """``{section: {option: value}}`` as getmail's parser reads ``text`` alone. Raises RcError."""
    parser = configparser.RawConfigParser(strict=True, interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise RcError(str(exc).split('\n', 1)[0])
    return dict((section, dict(parser.items(section))) for section in parser.sections())


def identity(text):
    """(server, username, password) of a file's ``[retriever]``, or None when it has none. Raises RcError."""
    retriever = read(text).get('retriever') or {}
    if 'server' not in retriever or 'username' not in retriever:
        return None
    return retriever['server'], retriever['username'], retriever.get('password')


def describe(text, base=DMS_BASE_OPTIONS):
    """What a ``getmail/<id>.cf`` file says (with ``base``, DMS's options or its ``getmailrc_general.cf``),
    never the password: ``server``, ``username``, ``protocol``, ``ssl``, ``port``, ``target`` (the argument after
    ``-d`` of the destination), ``folders``, ``keep`` (the base's ``delete``) and ``password_set``.
    Raises RcError; None when the file has no ``[retriever]`` server and username."""
    ident = identity(text)
    if ident is None:
        return None
    retriever = read(text)['retriever']
    kind = dict((name, key) for key, name in RETRIEVERS.items()).get(retriever.get('type'), (None, None))
    port = retriever.get('port')
    folders, target = [], None
    try:
        sections = check_combined(text, base)
    except RcError:
        sections = read(text)
    if retriever.get('mailboxes'):
        try:
            folders = list(ast.literal_eval(retriever['mailboxes']))
        except (ValueError, SyntaxError):
            folders = []
    arguments = sections.get('destination', {}).get('arguments')
    if arguments:
        try:
            args = list(ast.literal_eval(arguments))
        except (ValueError, SyntaxError):
            args = []
        if '-d' in args and args.index('-d') + 1 < len(args):
            target = args[args.index('-d') + 1]
    try:
        delete = (read(base).get('options') or {}).get('delete', 'false').strip().lower()
    except RcError:
        delete = 'false'
    return dict(server=ident[0], username=ident[1], protocol=kind[0], ssl=kind[1],
                port=int(port) if port and port.strip().isdigit() else port, target=target, folders=folders,
                keep=delete not in ('true', 'yes', 'on', '1'), password_set=bool(ident[2]))


def check_combined(text, base=DMS_BASE_OPTIONS):
    """Read ``base + text`` as getmail will, and evaluate its tuple options. Raises RcError."""
    sections = read(base + text)
    for section, option in (('retriever', 'mailboxes'), ('destination', 'arguments')):
        value = sections.get(section, {}).get(option)
        if value is None:
            continue
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise RcError('%s.%s: %s' % (section, option, exc))
        if not isinstance(parsed, tuple) or not all(isinstance(item, str) for item in parsed):
            raise RcError('%s.%s: not a tuple of strings' % (section, option))
    return sections


def mask(text, token_for):
    """``text`` with the value of every ``password`` option (and its continuation lines) masked."""
    out = []
    in_password = False
    for line in text.split('\n'):
        match = _PASSWORD_LINE.match(line)
        if match and not line.lstrip().startswith(('#', ';')):
            out.append(match.group(1) + (token_for(match.group(2)) if match.group(2) else ''))
            in_password = True
            continue
        if in_password and line[:1] in (' ', '\t') and line.strip():
            out.append(line[:len(line) - len(line.lstrip())] + token_for(line.strip()))
            continue
        in_password = False
        out.append(line)
    return '\n'.join(out)
