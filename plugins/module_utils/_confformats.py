# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""One parser, editor and value renderer per format of DMS's override files.

``PostfixMain``
    ``postfix-main.cf``: Postfix ``main.cf`` syntax, which is what it is (DMS appends the file to
    ``/etc/postfix/main.cf`` and rewrites that with ``postconf -n``, so the last definition of a key wins).  A
    logical line starts with a non-white-space character; a line that starts with white space continues it;
    lines whose first non-white-space character is ``#`` are comments.

``MasterOverrides``
    ``postfix-master.cf``: one ``service/type/parameter=value`` line each.  DMS reads the lines that are not
    blank or comments, strips each (``read -r``), and hands every line that starts with ``[0-9a-z]`` to
    ``postconf -P``; other lines are ignored.  ``postconf -P`` accepts no white space inside the value.

``DovecotConf``
    ``dovecot.cf``: Dovecot's config syntax (DMS copies the file to ``/etc/dovecot/local.conf``, included
    last).  Top-level ``key = value`` settings and ``type [name] { ... }`` sections, nested.

Each editor keeps every line it is not asked to change, byte for byte, and an unchanged file renders to its
original text.  Values are rendered the way the program reads them (:func:`render_postfix`,
:func:`render_master`, :func:`render_dovecot`); what cannot be represented raises ``ValidationError`` naming the
field.
"""

from __future__ import annotations

import re

from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

POSTFIX_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*$')
# service/type/parameter as postconf -P takes it: a service name (letters, digits, ., -, _, : for inet
# services such as 127.0.0.1:10025), a type, a parameter name.
MASTER_KEY = re.compile(r'^([0-9a-z][A-Za-z0-9_.:-]*)/(inet|unix|unix-dgram|fifo|pass)/([A-Za-z0-9_.-]+)$')
DOVECOT_NAME = re.compile(r'^[a-z0-9_]+(:[a-z]+)?$')
DOVECOT_SECTION_TYPE = re.compile(r'^[a-z0-9_]+$')
DOVECOT_SECTION_NAME = re.compile(r'^[A-Za-z0-9_.*/:@+-][A-Za-z0-9_.*/:@+ -]*$')
_DOVECOT_VAR = re.compile(r'%\{[^{}\n]*\}')


def _fail(field, problem):
    raise ValidationError('%s: %s' % (field, problem))


def check_chars(text, field, what='the value'):
    """Refuse what no line of a config file can carry: line breaks, NUL and other control characters, and
    text that was not valid UTF-8 (surrogate escapes)."""
    for ch in text:
        code = ord(ch)
        if ch in '\r\n':
            _fail(field, '%s contains a line break, which would start a new line (another setting) in the file'
                  % what)
        if code == 0:
            _fail(field, '%s contains a NUL byte' % what)
        if code < 0x20 and ch != '\t' or code == 0x7f:
            _fail(field, '%s contains the control character 0x%02x' % (what, code))
        if 0xd800 <= code <= 0xdfff:
            _fail(field, '%s is not valid UTF-8 (the byte 0x%02x cannot be represented)' % (what, code & 0xff))
    return text


def _scalar(value, field):
    """A YAML scalar as text: booleans yes/no, numbers as text."""
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    _fail(field, 'must be a string, a number, a boolean or a list of those, not %s' % type(value).__name__)
    return None


def _items(value, field):
    if isinstance(value, (list, tuple)):
        if not value:
            _fail(field, 'an empty list has no value to write; use null to remove the key')
        out = []
        for index, item in enumerate(value):
            if isinstance(item, (list, tuple, dict)):
                _fail('%s[%d]' % (field, index), 'a list item must be a string, a number or a boolean')
            out.append(_scalar(item, '%s[%d]' % (field, index)))
        return out
    return None


def _no_outer_space(text, field):
    if text != text.strip():
        _fail(field, 'the value begins or ends with white space, which the file format drops')


def render_postfix(value, field):
    """A ``main.cf`` value: yes/no, numbers as text, lists joined with ", " (Postfix reads commas and white
    space alike)."""
    items = _items(value, field)
    text = ', '.join(items) if items is not None else _scalar(value, field)
    check_chars(text, field)
    if '\t' in text:
        _fail(field, 'the value contains a tab; write a space')
    _no_outer_space(text, field)
    _check_macros(text, field)
    return text


_MACRO = re.compile(r'\$(\$|[A-Za-z0-9_]|\{|\()')


def _check_macros(text, field):
    """Every ``$`` of a Postfix value starts a parameter reference or is written ``$$``: Postfix stops with
    "macro processing error" on a lone one."""
    index = text.find('$')
    while index >= 0:
        match = _MACRO.match(text, index)
        if not match:
            _fail(field, 'a "$" must start a parameter reference ($name, ${name}, $(name)) or be written "$$" '
                         '(Postfix stops with "macro processing error" otherwise)')
        index = text.find('$', index + (2 if match.group(1) == '$' else 1))


def render_master(value, field):
    """A ``postconf -P`` value: yes/no, numbers as text, lists joined with "," (no white space: postconf -P
    refuses white space in a value)."""
    items = _items(value, field)
    text = ','.join(items) if items is not None else _scalar(value, field)
    check_chars(text, field)
    if any(ch.isspace() for ch in text):
        _fail(field, 'postconf -P (which DMS applies postfix-master.cf with) accepts no white space in a value; '
                     'give a list, or write items separated by "," without spaces')
    if not text:
        _fail(field, 'postconf -P cannot set an empty value; use null to remove the line')
    _check_macros(text, field)
    return text


def render_dovecot(value, field):
    """A Dovecot value: yes/no, numbers as text, lists joined with a space; quoted when it must be."""
    items = _items(value, field)
    text = ' '.join(items) if items is not None else _scalar(value, field)
    check_chars(text, field)
    if '\t' in text:
        _fail(field, 'the value contains a tab; write a space')
    bare = _DOVECOT_VAR.sub('', text)
    if '{' in bare or '}' in bare:
        _fail(field, 'the value contains "{" or "}" outside a %{...} variable, which Dovecot reads as a section '
                     'start or end')
    if '"' in text or '\\' in text:
        _fail(field, 'the value contains a double quote or a backslash, which Dovecot\'s config reader would '
                     'unescape')
    if text != text.strip() or '#' in text:
        # Dovecot drops outer white space and takes " #" as the start of a comment, except inside quotes.
        return '"%s"' % text
    return text


# -- postfix-main.cf -----------------------------------------------------------------------


class _Chunk:
    __slots__ = ('kind', 'key', 'lines')

    def __init__(self, kind, key, lines):
        self.kind = kind     # 'entry', 'section', 'other'
        self.key = key
        self.lines = lines


def _split_lines(text):
    if not text:
        return []
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


class _LineEditor:
    """Shared editing of ``key -> chunk`` files: set a key to one line, remove keys, keep only some."""

    def __init__(self, text):
        self.original = text
        self.chunks = []
        self.changed = False

    def chunks_of(self, key):
        return [c for c in self.chunks if c.kind == self.entry_kind and c.key == key]

    def keys(self):
        seen = []
        for chunk in self.chunks:
            if chunk.kind == self.entry_kind and chunk.key not in seen:
                seen.append(chunk.key)
        return seen

    def get(self, key):
        """The effective (last) value of ``key`` (its subclass's ``value_of``), or None."""
        found = self.chunks_of(key)
        return self.value_of(found[-1]) if found else None

    def items(self):
        return [(key, self.get(key)) for key in self.keys()]

    def _replace(self, key, lines, same):
        """Make ``key`` one chunk of ``lines``; an existing single chunk for which ``same`` holds is kept."""
        found = self.chunks_of(key)
        if len(found) == 1 and same(found[0]):
            return False
        if found:
            first = found[0]
            first.lines = lines
            self.chunks = [c for c in self.chunks if c is first or not (c.kind == self.entry_kind and c.key == key)]
        else:
            self.chunks.append(_Chunk(self.entry_kind, key, lines))
        self.changed = True
        return True

    def remove(self, key):
        before = len(self.chunks)
        self.chunks = [c for c in self.chunks if not (c.kind == self.entry_kind and c.key == key)]
        if len(self.chunks) != before:
            self.changed = True
            return True
        return False

    def keep_only(self, keys):
        """``exclusive``: drop every entry not in ``keys``, and every comment and unknown line."""
        keep = [c for c in self.chunks if c.kind == self.entry_kind and c.key in keys]
        if keep != self.chunks:
            self.chunks = keep
            self.changed = True
            return True
        return False

    def render(self):
        if not self.changed:
            return self.original
        lines = []
        for chunk in self.chunks:
            lines.extend(chunk.lines)
        return '\n'.join(lines) + '\n' if lines else ''

    def has_content(self):
        """True when the file would still hold a setting (or anything but blank lines and comments)."""
        for chunk in self.chunks:
            if chunk.kind != 'other':
                return True
            if any(line.strip() and not line.lstrip().startswith('#') for line in chunk.lines):
                return True
        return False


class PostfixMain(_LineEditor):
    """``postfix-main.cf`` (see the module docstring)."""

    entry_kind = 'entry'

    def __init__(self, text):
        super().__init__(text or '')
        for line in _split_lines(text or ''):
            stripped = line.strip()
            if not stripped or stripped.startswith('#'):
                self.chunks.append(_Chunk('other', None, [line]))
            elif line[0].isspace():
                last = self.chunks[-1] if self.chunks else None
                if last is not None and last.kind == 'entry':
                    last.lines.append(line)
                else:
                    self.chunks.append(_Chunk('other', None, [line]))
            elif '=' in line:
                key = line.split('=', 1)[0].strip()
                self.chunks.append(_Chunk('entry', key, [line]))
            else:
                self.chunks.append(_Chunk('other', None, [line]))

    @staticmethod
    def value_of(chunk):
        """The value of an entry chunk: continuation lines joined with one space."""
        first = chunk.lines[0].split('=', 1)[1]
        parts = [first.strip()] + [line.strip() for line in chunk.lines[1:]
                                   if line.strip() and not line.strip().startswith('#')]
        return ' '.join(p for p in parts if p)

    def set(self, key, value):
        return self._replace(key, ['%s = %s' % (key, value)], lambda c: self.value_of(c) == value)


# -- postfix-master.cf ------------------------------------------------------------------------


class MasterOverrides(_LineEditor):
    """``postfix-master.cf`` (see the module docstring).  Keys are ``service/type/parameter``."""

    entry_kind = 'entry'

    def __init__(self, text):
        super().__init__(text or '')
        for line in _split_lines(text or ''):
            stripped = line.strip()
            key = None
            if stripped and not stripped.startswith('#') and re.match(r'^[0-9a-z]', stripped) and '=' in stripped:
                key = stripped.split('=', 1)[0].strip()
            self.chunks.append(_Chunk('entry' if key else 'other', key, [line]))

    @staticmethod
    def value_of(chunk):
        return chunk.lines[0].strip().split('=', 1)[1].strip()

    def set(self, key, value):
        return self._replace(key, ['%s=%s' % (key, value)], lambda c: self.value_of(c) == value)


# -- dovecot.cf ---------------------------------------------------------------------------------


class DovecotError(ValueError):
    """The existing dovecot.cf cannot be read as Dovecot config."""


def _strip_comment(line):
    """A Dovecot line without its comment (``#`` at the start or after white space, outside quotes)."""
    quoted = False
    for index, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == '#' and not quoted and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def section_header(header):
    """The canonical form of a section header: its words separated by one space."""
    return ' '.join(header.split())


def _norm_line(line):
    text = _strip_comment(line).strip()
    if '=' in text and not text.endswith('{'):
        key, value = text.split('=', 1)
        return '%s = %s' % (key.strip(), value.strip())
    if text.endswith('{'):
        return section_header(text[:-1]) + ' {'
    return text


class DovecotConf(_LineEditor):
    """``dovecot.cf``: top-level settings (``entry``) and sections (``section``, keyed by their header)."""

    entry_kind = 'entry'

    def __init__(self, text):
        super().__init__(text or '')
        lines = _split_lines(text or '')
        index = 0
        while index < len(lines):
            line = lines[index]
            code = _strip_comment(line).strip()
            if not code or code.startswith('!'):
                self.chunks.append(_Chunk('other', None, [line]))
                index += 1
            elif code.endswith('{') or ('{' in code and code.endswith('}') and '=' not in code.split('{')[0]):
                header = section_header(code.split('{', 1)[0])
                depth, start = 0, index
                while index < len(lines):
                    inner = _strip_comment(lines[index]).strip()
                    depth += inner.count('{') - len(_DOVECOT_VAR.findall(inner))
                    depth -= inner.count('}') - len(_DOVECOT_VAR.findall(inner))
                    index += 1
                    if depth <= 0:
                        break
                if depth > 0:
                    raise DovecotError('the section "%s {" opened at line %d is never closed' % (header, start + 1))
                self.chunks.append(_Chunk('section', header, lines[start:index]))
            elif code == '}':
                raise DovecotError('line %d closes a section that was never opened' % (index + 1))
            elif '=' in code:
                key = code.split('=', 1)[0].strip()
                self.chunks.append(_Chunk('entry', key, [line]))
                index += 1
            else:
                self.chunks.append(_Chunk('other', None, [line]))
                index += 1

    @staticmethod
    def value_of(chunk):
        return _strip_comment(chunk.lines[0]).split('=', 1)[1].strip()

    def set(self, key, value):
        return self._replace(key, ['%s = %s' % (key, value)], lambda c: self.value_of(c) == value)

    def sections(self):
        seen = []
        for chunk in self.chunks:
            if chunk.kind == 'section' and chunk.key not in seen:
                seen.append(chunk.key)
        return seen

    def _section_chunks(self, header):
        return [c for c in self.chunks if c.kind == 'section' and c.key == header]

    def set_section(self, header, lines):
        """Make ``header``'s section the rendered ``lines``; an equal section (white space and comments aside)
        keeps its bytes.  Duplicates of the header (which Dovecot merges) are dropped."""
        wanted = [_norm_line(line) for line in lines if _norm_line(line)]
        found = self._section_chunks(header)
        if len(found) == 1 and [_norm_line(line) for line in found[0].lines if _norm_line(line)] == wanted:
            return False
        if found:
            first = found[0]
            first.lines = list(lines)
            self.chunks = [c for c in self.chunks if c is first or not (c.kind == 'section' and c.key == header)]
        else:
            self.chunks.append(_Chunk('section', header, list(lines)))
        self.changed = True
        return True

    def remove_section(self, header):
        before = len(self.chunks)
        self.chunks = [c for c in self.chunks if not (c.kind == 'section' and c.key == header)]
        if len(self.chunks) != before:
            self.changed = True
            return True
        return False

    def keep_only_both(self, keys, headers):
        keep = [c for c in self.chunks
                if (c.kind == 'entry' and c.key in keys) or (c.kind == 'section' and c.key in headers)]
        if keep != self.chunks:
            self.chunks = keep
            self.changed = True
            return True
        return False


def render_section(header, body, field, indent=''):
    """The lines of a Dovecot section ``header { ... }`` from a mapping (nested mappings are sections)."""
    if not isinstance(body, dict):
        _fail(field, 'a section is a mapping of settings (and nested sections), not %s' % type(body).__name__)
    lines = ['%s%s {' % (indent, header)]
    for key, value in body.items():
        where = '%s.%s' % (field, key)
        if not isinstance(key, str):
            _fail(where, 'a setting or section name must be a string')
        check_chars(key, where, 'the name')
        if isinstance(value, dict):
            lines.extend(render_section(section_name(key, where), value, where, indent + '  '))
            continue
        if not DOVECOT_NAME.match(key):
            _fail(where, 'not a Dovecot setting name (lower-case letters, digits and _); "{", "}", "=", "#" and '
                         'white space cannot be part of a name')
        if value is None:
            _fail(where, 'null has no meaning inside a section; leave the setting out')
        lines.append('%s  %s = %s' % (indent, key, render_dovecot(value, where)))
    lines.append('%s}' % indent)
    return lines


def section_name(header, field):
    """Check and normalise a section header ``type [name]``."""
    check_chars(header, field, 'the section header')
    parts = header.split(None, 1)
    if not parts:
        _fail(field, 'a section header must not be empty')
    if not DOVECOT_SECTION_TYPE.match(parts[0]):
        _fail(field, 'the section type %r is not a Dovecot section type (lower-case letters, digits and _)'
              % parts[0])
    if len(parts) > 1:
        name = parts[1].strip()
        if not DOVECOT_SECTION_NAME.match(name) or '  ' in name:
            _fail(field, 'the section name %r may only contain letters, digits, single spaces and . * / : @ + - _; '
                         '"{", "}", "=", "#" and quotes cannot be part of it' % name)
        if ' ' in name:
            name = '"%s"' % name
        return '%s %s' % (parts[0], name)
    return parts[0]
