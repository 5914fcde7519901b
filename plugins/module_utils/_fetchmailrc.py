# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The fetchmail run-control format (``fetchmail.cf`` of DMS's config volume): read, quote, write, mask.

The rules are those of fetchmail's own lexer (``rcfile_l.l``, fetchmail 6.4):

* A string is a run of characters other than white space and ``=;:,``, or
  text between single quotes or between double quotes.  A quoted string ends
  at the next quote of its kind; a backslash does *not* protect it.  Inside
  any string fetchmail then resolves C-style escapes: ``\\\\``, ``\\n``,
  ``\\t``, ``\\b``, ``\\r``, ``\\xHH`` (at most two hex digits), ``\\0ooo``
  (octal), ``\\ddd`` (decimal); a backslash before another character is
  dropped.  So a quote inside a single-quoted string is written ``\\x27``,
  and a backslash ``\\\\`` (:func:`quote`).
* ``#`` up to the end of the line is a comment (outside quotes); ``;``, ``:``
  and ``,`` are noise, as are the words ``with``, ``and``, ``has``,
  ``wants``, ``options``.  Line breaks are white space: a statement may span
  lines.
* Statements begin with ``set``, ``defaults``, ``poll``, ``server`` or
  ``skip``.  A ``poll`` statement names its server first; ``user``/``username``
  begins a user clause whose first string is the remote user name.  After
  ``user``, ``pass``, ``is``, ``to`` and ``=`` the next word is a string even
  when it looks like a keyword (the lexer's NAME state).

:func:`parse` splits a file into line ranges: statements (with the server,
the users and the password token found in them) and everything else
(comments, blank lines), which is kept byte for byte.  DMS's
``FETCHMAIL_PARALLEL=1`` splits ``/etc/fetchmailrc`` at every *line* that
contains ``poll``, so the collection writes each statement on one line
(:func:`render_poll`).
"""

from __future__ import annotations

import re

STATEMENT_WORDS = ('set', 'defaults', 'poll', 'server', 'skip')
POLL_WORDS = ('poll', 'server', 'skip')
_NAME_STATE_WORDS = ('user', 'username', 'pass', 'password', 'is', 'to', '=')
_PASSWORD_WORDS = ('pass', 'password', 'esmtppassword')
# A word: from a character that is not a quote or '#' up to white space or one of '=;:,' (quotes and '#' inside
# a word belong to it, as with fetchmail's lexer).
_WORD_RE = re.compile(r'[^=;:, \t\r\n]+')
_HEX = '0123456789abcdefABCDEF'


class Token:
    """One lexical token: its text as fetchmail resolves it, whether it is a string (quoted, or a name right
    after ``user``/``pass``/``is``/``to``, never a keyword), and where it is."""

    __slots__ = ('value', 'quoted', 'start', 'end', 'line')

    def __init__(self, value, quoted, start, end, line):
        self.value = value
        self.quoted = quoted
        self.start = start
        self.end = end
        self.line = line


class RcError(ValueError):
    """A file this module cannot read the way fetchmail would (an unterminated quote)."""


def unescape(text):
    """fetchmail's ``escapes()``: resolve the C-style escapes of a string."""
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '\\' and i + 1 < n and text[i + 1] in '0123456789xX':
            i += 1
            value = 0
            count = 0
            if text[i] in 'xX':
                i += 1
                while i < n and text[i] in _HEX and count < 2:
                    value = value * 16 + int(text[i], 16)
                    i += 1
                    count += 1
            elif text[i] == '0':
                while i < n and text[i] in '01234567' and count < 3:
                    value = value * 8 + int(text[i])
                    i += 1
                    count += 1
            else:
                while i < n and text[i].isdigit() and count < 3:
                    value = value * 10 + int(text[i])
                    i += 1
                    count += 1
            out.append(chr(value))
        elif ch == '\\':
            i += 1
            if i >= n:
                break
            nxt = text[i]
            if nxt == '\n':
                i += 1
                continue
            out.append({'\\': '\\', 'n': '\n', 't': '\t', 'b': '\b', 'r': '\r'}.get(nxt, nxt))
            i += 1
        else:
            out.append(ch)
            i += 1
    return ''.join(out)


def quote(value):
    """A single-quoted fetchmailrc string that fetchmail reads back as exactly ``value``.

    Backslashes are doubled and single quotes written as ``\\x27`` (fetchmail's
    lexer ends a quoted string at the next quote, escaped or not).  Callers
    refuse line breaks and other control characters before quoting.
    """
    return "'" + value.replace('\\', '\\\\').replace("'", '\\x27') + "'"


def tokenize(text):
    """The tokens of a fetchmailrc text. Raises RcError for an unterminated quote."""
    tokens = []
    i, n, line = 0, len(text), 1
    name_state = False
    while i < n:
        ch = text[i]
        if ch == '\n':
            line += 1
            i += 1
        elif ch in ' \t\r;:,':
            i += 1
        elif ch == '\\' and text.startswith('\n', i + 1):
            i += 1  # a backslash before a line break only joins the lines
        elif ch == '#':
            while i < n and text[i] != '\n':
                i += 1
        elif ch in '\'"':
            end = text.find(ch, i + 1)
            if end < 0:
                raise RcError('line %d: a string opened with %s is never closed' % (line, ch))
            tokens.append(Token(unescape(text[i + 1:end]), True, i, end + 1, line))
            line += text.count('\n', i, end)
            i = end + 1
            name_state = False
        elif ch == '=':
            tokens.append(Token('=', False, i, i + 1, line))
            i += 1
            name_state = True
        else:
            match = _WORD_RE.match(text, i)
            word = match.group(0)
            # A word right after user/pass/is/to is a name (a string), whatever it looks like.
            tokens.append(Token(unescape(word), name_state, i, match.end(), line))
            name_state = (not name_state) and word.lower() in _NAME_STATE_WORDS
            i = match.end()
    return tokens


class Statement:
    """A statement of the file: its line range and what it says."""

    __slots__ = ('first', 'last', 'kind', 'server', 'users', 'tokens', 'shared')

    def __init__(self, first, kind, tokens):
        self.first = first      # 0-based index of its first line
        self.last = first       # index of its last line (inclusive)
        self.kind = kind        # 'set', 'defaults', 'poll' (poll/server/skip)
        self.server = None
        self.users = []
        self.tokens = tokens
        self.shared = False     # shares a line with another statement

    def password(self):
        """The value of the first ``pass`` of the statement, or None."""
        for index, token in enumerate(self.tokens[:-1]):
            if not token.quoted and token.value.lower() in ('pass', 'password'):
                return self.tokens[index + 1].value
        return None


def _line_starts(text):
    starts = [0]
    for match in re.finditer('\n', text):
        starts.append(match.end())
    return starts


def parse(text):
    """Split ``text`` into statements. Returns (lines, statements).

    ``lines`` are the file's lines without their endings; every line that is
    not part of a statement (before the first one, or comment and blank lines
    at the end of one) is not covered by any statement.  Raises RcError.
    """
    tokens = tokenize(text)
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    lines = [line[:-1] if line.endswith('\r') else line for line in lines]
    statements = []
    current = None
    expect_server = False
    expect_user = False
    for token in tokens:
        word = token.value.lower() if not token.quoted else None
        if word in STATEMENT_WORDS and not expect_server and not expect_user:
            current = Statement(token.line - 1, 'poll' if word in POLL_WORDS else word, [])
            if statements and statements[-1].last >= current.first:
                statements[-1].shared = True
                current.shared = True
            statements.append(current)
            expect_server = word in POLL_WORDS
            continue
        if current is None:
            continue
        current.tokens.append(token)
        end_line = token.line - 1 + text.count('\n', token.start, token.end)
        current.last = max(current.last, end_line)
        if expect_server:
            current.server = token.value
            expect_server = False
        elif expect_user:
            current.users.append(token.value)
            expect_user = False
        elif current.kind == 'poll' and word in ('user', 'username'):
            expect_user = True
    return lines, statements


# Words that end a folder list or a list of local names (options that may follow them).
_OPTION_WORDS = frozenset(('is', 'to', 'here', 'there', 'keep', 'nokeep', 'no', 'ssl', 'sslproto', 'sslcert',
                           'sslkey', 'sslcertck', 'sslfingerprint', 'sslcertfile', 'sslcertpath', 'folder',
                           'user', 'username', 'pass', 'password', 'fetchall', 'flush', 'limit', 'fetchlimit',
                           'smtphost', 'smtpname', 'mda', 'bsmtp', 'lmtp', 'preconnect', 'postconnect',
                           'idle', 'rewrite', 'stripcr', 'forcecr', 'pass8bits', 'dropstatus', 'mimedecode'))


def _options(tokens, into, users):
    """Walk the tokens of a statement (after its keyword): server options into ``into``, one dict per user
    clause appended to ``users`` (starting as a copy of ``into``)."""
    current = into
    index, count = 0, len(tokens)

    def word(i):
        return None if i >= count or tokens[i].quoted else tokens[i].value.lower()

    while index < count:
        name = word(index)
        following = tokens[index + 1].value if index + 1 < count else None
        if name in ('user', 'username') and following is not None:
            current = dict(into, username=following, folders=list(into.get('folders', [])))
            users.append(current)
            index += 2
            continue
        if name in ('proto', 'protocol') and following is not None:
            current['protocol'] = following.lower()
            index += 2
        elif name in ('service', 'port') and following is not None:
            current['port'] = int(following) if following.isdigit() else following
            index += 2
        elif name in ('pass', 'password'):
            current['password_set'] = bool(following)
            index += 2
        elif name in ('is', 'to') and following is not None:
            if current.get('target') is None:
                current['target'] = following
            index += 2
            while index < count and (tokens[index].quoted or word(index) not in _OPTION_WORDS):
                index += 1   # more local names: the first is the target
        elif name == 'keep':
            current['keep'] = True
            index += 1
        elif name == 'nokeep' or (name == 'no' and word(index + 1) == 'keep'):
            current['keep'] = False
            index += 1 if name == 'nokeep' else 2
        elif name == 'ssl':
            current['ssl'] = True
            index += 1
        elif name in ('folder', 'folders'):
            index += 1
            folders = []
            while index < count and (tokens[index].quoted or word(index) not in _OPTION_WORDS):
                folders.append(tokens[index].value)
                index += 1
            current['folders'] = folders
        else:
            index += 1


def read_polls(statements):
    """What the ``poll`` statements of a parsed file say, one dict per user clause, never a password.

    Each has ``server``, ``username``, ``protocol`` (null: fetchmail's auto-probing), ``port`` (null: the
    protocol's), ``target`` (the first local name), ``ssl``, ``keep`` (fetchmail's defaults: no TLS wrapper,
    ``nokeep``), ``folders`` and ``password_set``; options of a ``defaults`` statement apply to the polls after
    it, as in fetchmail.
    """
    base = dict(protocol=None, port=None, target=None, ssl=False, keep=False, folders=[], password_set=False)
    out = []
    for st in statements:
        if st.kind == 'defaults':
            defaults = dict(base)
            _options(st.tokens, defaults, [])
            base = defaults
            continue
        if st.kind != 'poll' or st.server is None:
            continue
        server_opts = dict(base, server=st.server)
        users = []
        _options(st.tokens[1:], server_opts, users)
        fields = ('server', 'username', 'protocol', 'port', 'target', 'ssl', 'keep', 'folders', 'password_set')
        for user in users:
            out.append(dict((k, user.get(k)) for k in fields))
    return out


def password_spans(text):
    """(start, end) offsets of every password string of the text (``pass``, ``password``, ``esmtppassword``).

    For masking diffs; a text that does not tokenize is masked from its first
    password keyword on (see :func:`mask`).
    """
    spans = []
    tokens = tokenize(text)
    for index, token in enumerate(tokens[:-1]):
        if not token.quoted and token.value.lower() in _PASSWORD_WORDS:
            nxt = tokens[index + 1]
            spans.append((nxt.start, nxt.end))
    return spans


def mask(text, token_for):
    """``text`` with every password replaced by ``token_for(password)`` (quoted)."""
    try:
        spans = password_spans(text)
    except RcError:
        # An unterminated quote: hide everything after the first password keyword rather than risk showing one.
        match = re.search(r'\b(pass(word)?|esmtppassword)\b', text)
        if not match:
            return text
        return text[:match.end()] + ' ' + token_for(text[match.end():])
    out, pos = [], 0
    for start, end in spans:
        raw = text[start:end]
        secret = unescape(raw[1:-1]) if raw[:1] in '\'"' else unescape(raw)
        out.append(text[pos:start])
        out.append(quote(token_for(secret)))
        pos = end
    out.append(text[pos:])
    return ''.join(out)


def render_poll(server, protocol, port, username, password, target, ssl, keep, folders, cleartext=False):
    """One ``poll`` statement, on one line, in the order fetchmail's grammar wants.

    ``poll SERVER proto P [service PORT] user USER pass PASS is TARGET here
    keep|nokeep [folder F, ...] [ssl | sslproto '']``.  ``nokeep`` is written
    out (it is fetchmail's default) so that the file says what happens to
    remote mail.  Without ``ssl`` fetchmail 6.4 insists on STARTTLS;
    ``sslproto ''`` (``cleartext``) lets it log in without any TLS.
    """
    parts = ['poll', quote(server), 'proto', protocol]
    if port is not None:
        parts += ['service', str(port)]
    parts += ['user', quote(username), 'pass', quote(password), 'is', quote(target), 'here']
    parts.append('keep' if keep else 'nokeep')
    if folders:
        parts += ['folder', ','.join(quote(folder) for folder in folders)]
    if ssl:
        parts.append('ssl')
    elif cleartext:
        parts += ['sslproto', "''"]
    return ' '.join(parts)
