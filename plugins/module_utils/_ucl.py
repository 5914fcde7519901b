# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Rspamd's UCL configuration format: a reader, a syntax check, and the in-place editor of ``dkim_signing.conf``.

Shared by ``dms_dkim`` (the ``domain { }`` block of ``rspamd/override.d/dkim_signing.conf``) and ``dms_config``
(every ``rspamd/override.d/<name>.conf``, checked before it is written).

The reader knows what Rspamd's override files use: ``key = value;`` / ``key: value,`` items, ``{ }`` objects,
``[ ]`` arrays, single- and double-quoted strings, ``<<EOD`` texts, ``#`` and nested ``/* */`` comments and
``.include``-style macros.  It is not a full UCL implementation (no variables expansion, no JSON-only corner
cases); what it refuses, Rspamd would refuse too.
"""

from __future__ import annotations

import re

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v

RSPAMD_SIGNING_CONF = 'rspamd/override.d/dkim_signing.conf'

# -- the reader ----------------------------------------------------------------------


class UclError(ValueError):
    def __init__(self, message, text, pos):
        line = text.count('\n', 0, pos) + 1
        super().__init__('%s at line %d' % (message, line))


_PUNCT = '{}[]=:;,'
_HEREDOC_RE = re.compile(r'<<([A-Z]+)\n')
_MACRO_RE = re.compile(r'\.[A-Za-z_][A-Za-z0-9_]*')


def _unescape(body):
    return re.sub(r'\\(.)', lambda m: {'n': '\n', 't': '\t', 'r': '\r'}.get(m.group(1), m.group(1)), body)


def ucl_tokens(text):
    """(kind, value, start, end) for the tokens of a UCL text; comments and white space dropped."""
    tokens = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == '#':
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif text.startswith('/*', i):
            depth, j = 0, i
            while j < n:
                if text.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif text.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                    if depth == 0:
                        break
                else:
                    j += 1
            if depth:
                raise UclError('unterminated /* comment', text, i)
            i = j
        elif ch in '"\'':
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == '\\' else 1
            if j >= n:
                raise UclError('unterminated string', text, i)
            tokens.append(('str', _unescape(text[i + 1:j]), i, j + 1))
            i = j + 1
        elif text.startswith('<<', i) and _HEREDOC_RE.match(text, i):
            match = _HEREDOC_RE.match(text, i)
            end = text.find('\n%s' % match.group(1), match.end() - 1)
            if end < 0:
                raise UclError('unterminated <<%s text' % match.group(1), text, i)
            stop = end + 1 + len(match.group(1))
            tokens.append(('str', text[match.end():end], i, stop))
            i = stop
        elif ch in _PUNCT:
            tokens.append(('punct', ch, i, i + 1))
            i += 1
        else:
            match = _MACRO_RE.match(text, i) if ch == '.' else None
            if match:
                j = match.end()
                if j < n and text[j] == '(':
                    close = text.find(')', j)
                    if close < 0:
                        raise UclError('unterminated macro arguments', text, i)
                    j = close + 1
                tokens.append(('macro', text[i:j], i, j))
                i = j
                continue
            j = i
            while j < n and not text[j].isspace() and text[j] not in _PUNCT and text[j] not in '"\'#':
                j += 1
            tokens.append(('atom', text[i:j], i, j))
            i = j
    return tokens


def _match_close(tokens, k, text):
    pairs = {'{': '}', '[': ']'}
    stack = []
    for m in range(k, len(tokens)):
        kind, value = tokens[m][0], tokens[m][1]
        if kind != 'punct':
            continue
        if value in pairs:
            stack.append(pairs[value])
        elif value in '}]':
            if not stack or stack.pop() != value:
                raise UclError('unbalanced %r' % value, text, tokens[m][2])
            if not stack:
                return m
    raise UclError('unbalanced %r' % tokens[k][1], text, tokens[k][2])


def ucl_items(tokens, lo, hi, text):
    """The ``key [=|:] value [;|,]`` items between token positions lo and hi (one nesting level)."""
    items = []
    k = lo
    while k < hi:
        kind, value, start, dummy = tokens[k]
        if kind == 'punct' and value in ';,':
            k += 1
            continue
        if kind == 'macro':
            k += 1
            if k < hi and tokens[k][0] in ('str', 'atom'):
                k += 1
            continue
        if kind not in ('atom', 'str'):
            raise UclError('unexpected %r' % value, text, start)
        item = {'key': value, 'key_tok': k}
        k += 1
        if k < hi and tokens[k][0] == 'punct' and tokens[k][1] in '=:':
            k += 1
        if k >= hi:
            raise UclError('%r has no value' % value, text, start)
        vkind, vvalue = tokens[k][0], tokens[k][1]
        if vkind == 'punct' and vvalue in '{[':
            close = _match_close(tokens, k, text)
            item['kind'] = 'object' if vvalue == '{' else 'array'
            item['open'], item['close'] = k, close
            k = close + 1
        elif vkind in ('atom', 'str'):
            item['kind'] = 'scalar'
            item['value'] = vvalue
            k += 1
        else:
            raise UclError('unexpected %r' % vvalue, text, tokens[k][2])
        item['end_tok'] = k - 1
        if k < hi and tokens[k][0] == 'punct' and tokens[k][1] in ';,':
            item['end_tok'] = k
            k += 1
        items.append(item)
    return items


# -- dkim_signing.conf ---------------------------------------------------------------

DEFAULT_SIGNING_CONF = '''\
# Rspamd DKIM signing, see https://rspamd.com/doc/modules/dkim_signing.html
# The settings are DMS's defaults (what `setup config dkim` writes).  The
# dms.mailserver.dms_dkim module manages the entries of its domains inside
# "domain { }"; everything else in this file is yours and is kept as it is.

enabled = true;

sign_authenticated = true;
sign_local = false;
try_fallback = false;

use_domain = "header";
use_redis = false; # keys come from the files below, not from Redis
use_esld = true;
allow_username_mismatch = true;

check_pubkey = true; # Rspamd signs only when the published DNS key matches

domain {
}
'''


class SigningConf:
    """The ``domain { … }`` block of an Rspamd ``dkim_signing.conf``, edited in place.

    Only the entries of the domains asked for are touched: each becomes
    ``<domain> { path = "…"; selector = "…"; }`` (an entry that already says
    exactly that keeps its bytes).  Other domains' entries, every other
    setting, comments and layout stay as they are.  When the file has no
    top-level ``domain`` block one is appended; a missing file is created with
    DMS's default settings.
    """

    def __init__(self, text, relpath=RSPAMD_SIGNING_CONF):
        self.relpath = relpath
        self.original = text
        self.text = DEFAULT_SIGNING_CONF if text is None else text
        self._ops = []
        self._pending = []
        try:
            self._parse()
        except UclError as exc:
            raise v.ValidationError('%s: cannot be parsed as UCL (%s); fix or move the file, nothing was changed'
                                    % (relpath, exc))

    def _parse(self):
        text = self.text
        tokens = ucl_tokens(text)
        self._tokens = tokens
        blocks = [it for it in ucl_items(tokens, 0, len(tokens), text) if it['key'].lower() == 'domain']
        if len(blocks) > 1:
            raise UclError('more than one top-level "domain" block (Rspamd would not merge them)', text,
                           tokens[blocks[1]['key_tok']][2])
        self.block = None
        self.entries = {}
        if not blocks:
            return
        block = blocks[0]
        if block['kind'] != 'object':
            raise UclError('"domain" is not a block of entries', text, tokens[block['key_tok']][2])
        self.block = block
        for item in ucl_items(tokens, block['open'] + 1, block['close'], text):
            name = item['key'].lower().rstrip('.')
            settings = None
            if item['kind'] == 'object':
                inner = ucl_items(tokens, item['open'] + 1, item['close'], text)
                settings = {}
                for setting in inner:
                    settings[setting['key'].lower()] = setting.get('value') if setting['kind'] == 'scalar' else None
                    if setting['kind'] != 'scalar':
                        settings['_complex'] = True
            item['settings'] = settings
            self.entries.setdefault(name, []).append(item)

    def get(self, domain):
        """(path, selector) of a domain's entry when it is a plain one, else None."""
        items = self.entries.get(domain)
        if not items or items[0]['settings'] is None:
            return None
        settings = items[0]['settings']
        return settings.get('path'), settings.get('selector')

    def domains(self):
        """``(domain, path, selector)`` of every entry of the ``domain`` block, in file order, each domain once
        (the first entry, as :meth:`get`); an entry that is not a plain ``{ path; selector; }`` has None for
        what it does not say."""
        out = []
        for domain, items in self.entries.items():
            settings = items[0]['settings'] or {}
            out.append((domain, settings.get('path'), settings.get('selector')))
        return out

    # spans

    def _span(self, item):
        return self._tokens[item['key_tok']][2], self._tokens[item['end_tok']][3]

    def _line_start(self, pos):
        return self.text.rfind('\n', 0, pos) + 1

    def _indent_of(self, pos):
        start = self._line_start(pos)
        prefix = self.text[start:pos]
        return prefix if not prefix.strip() else None

    def _render(self, domain, path, selector, indent):
        return ('%s {\n%s    path = "%s";\n%s    selector = "%s";\n%s}'
                % (domain, indent, path, indent, selector, indent))

    def _is_plain(self, item, path, selector):
        settings = item['settings']
        return (settings is not None and not settings.get('_complex')
                and set(settings) == {'path', 'selector'}
                and settings['path'] == path and settings['selector'] == selector)

    def _remove_item(self, item):
        start, end = self._span(item)
        indent = self._indent_of(start)
        line_end = self.text.find('\n', end)
        rest = self.text[end:line_end if line_end >= 0 else len(self.text)]
        if indent is not None and not rest.strip():
            start = self._line_start(start)
            end = line_end + 1 if line_end >= 0 else len(self.text)
        self._ops.append((start, end, ''))

    def set(self, domain, path, selector):
        """Make the domain's entry sign with ``path`` and ``selector``. Returns True when that is a change."""
        items = self.entries.get(domain, [])
        if items:
            first = items[0]
            changed = False
            if not self._is_plain(first, path, selector):
                start, end = self._span(first)
                indent = self._indent_of(start)
                self._ops.append((start, end, self._render(domain, path, selector, indent or '')))
                changed = True
            for dup in items[1:]:
                self._remove_item(dup)
                changed = True
            return changed
        self._pending.append((domain, path, selector))
        return True

    def remove(self, domain):
        items = self.entries.get(domain, [])
        for item in items:
            self._remove_item(item)
        return bool(items)

    def render(self):
        """The edited text (the original text when nothing changed)."""
        if not self._ops and not self._pending:
            return self.original
        text = self.text
        ops = list(self._ops)
        if self._pending:
            if self.block is not None:
                open_pos = self._tokens[self.block['key_tok']][2]
                block_indent = self._indent_of(open_pos) or ''
                indent = block_indent + '    '
                close_pos = self._tokens[self.block['close']][2]
                body = '\n'.join(indent + self._render(d, p, s, indent) for d, p, s in self._pending)
                if self._indent_of(close_pos) is not None:
                    ops.append((self._line_start(close_pos), self._line_start(close_pos), body + '\n'))
                else:
                    ops.append((close_pos, close_pos, '\n' + body + '\n' + block_indent))
            else:
                body = '\n'.join('    ' + self._render(d, p, s, '    ') for d, p, s in self._pending)
                lead = ''
                if text and not text.endswith('\n'):
                    lead = '\n'
                if text.strip() and not text.endswith('\n\n'):
                    lead += '\n'
                ops.append((len(text), len(text), lead + 'domain {\n' + body + '\n}\n'))
        for start, end, replacement in sorted(ops, key=lambda op: (op[0], op[1]), reverse=True):
            text = text[:start] + replacement + text[end:]
        return text


def _check_items(tokens, lo, hi, text):
    for item in ucl_items(tokens, lo, hi, text):
        if item['kind'] in ('object', 'array'):
            if item['kind'] == 'object':
                _check_items(tokens, item['open'] + 1, item['close'], text)
            else:
                _check_array(tokens, item['open'] + 1, item['close'], text)


def _check_array(tokens, lo, hi, text):
    k = lo
    while k < hi:
        kind, value, start = tokens[k][0], tokens[k][1], tokens[k][2]
        if kind == 'punct' and value in '{[':
            close = _match_close(tokens, k, text)
            if value == '{':
                _check_items(tokens, k + 1, close, text)
            else:
                _check_array(tokens, k + 1, close, text)
            k = close + 1
        elif kind in ('atom', 'str') or (kind == 'punct' and value == ','):
            k += 1
        else:
            raise UclError('unexpected %r in an array' % value, text, start)


def check(text):
    """Raise :class:`UclError` when ``text`` is not a well-formed UCL document (items, objects, arrays)."""
    tokens = ucl_tokens(text)
    _check_items(tokens, 0, len(tokens), text)
