# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Line tables in DMS's formats, read and written without losing anything.

DMS's rules (``_get_valid_lines_from_file``): a line whose first non-blank
character is ``#`` is a comment, a blank or white-space-only line is ignored,
CRLF line endings and a missing final newline are tolerated (DMS fixes them in
place).  Everything else is a data line.  ``#`` later in a line is *not* a
comment.

A :class:`Table` keeps every line it read, in order.  Lines the collection
does not manage (comments, blank lines, lines of a shape it does not parse)
come back out of :meth:`Table.render` exactly as they went in; a managed line
is only rewritten when its entry changes.  When a file is written at all it is
written with LF endings and a final newline, as DMS itself would leave it.
"""

from __future__ import annotations

import re

_WS_SPLIT = re.compile(r'\s+')


class Entry:
    """One data line: the raw text and the parsed key and value."""

    __slots__ = ('raw', 'key', 'value')

    def __init__(self, raw: str, key: str, value: str):
        self.raw = raw
        self.key = key
        self.value = value


def is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith('#')


def split_lines(text: str):
    """Split file text into lines without their endings; CRLF and CR-less last line tolerated."""
    if not text:
        return []
    lines = text.split('\n')
    if lines[-1] == '':
        lines.pop()
    return [line[:-1] if line.endswith('\r') else line for line in lines]


# -- parsers: raw line -> (key, value) or None for a line they do not understand


def parse_pipe(line: str):
    """``key|value`` (postfix-accounts.cf, dovecot-masters.cf)."""
    if '|' not in line:
        return None
    key, value = line.split('|', 1)
    return key.strip(), value


def parse_colon(line: str):
    """``key:value`` (dovecot-quotas.cf)."""
    if ':' not in line:
        return None
    key, value = line.split(':', 1)
    return key.strip(), value.strip()


def parse_whitespace(line: str):
    """``key value…`` split at the first run of white space; a lone key has value ''."""
    parts = _WS_SPLIT.split(line.strip(), 1)
    if not parts or not parts[0]:
        return None
    return parts[0], (parts[1] if len(parts) > 1 else '')


def parse_regexp(line: str):
    """``/pattern/flags result`` (postfix-regexp.cf, Postfix pcre_table(5)).

    The key is the whole ``/pattern/flags`` token; the delimiter is the first
    character and may be escaped with a backslash inside the pattern.
    """
    text = line.strip()
    if len(text) < 2 or text[0].isalnum() or text[0].isspace() or text[0] in '\\#':
        return None
    delim = text[0]
    i = 1
    while i < len(text):
        if text[i] == '\\':
            i += 2
            continue
        if text[i] == delim:
            break
        i += 1
    if i >= len(text):
        return None
    j = i + 1
    while j < len(text) and not text[j].isspace():
        j += 1
    key = text[:j]
    value = text[j:].strip()
    return key, value


class Table:
    """An ordered line table with a case-insensitive key index."""

    def __init__(self, text: str, parser, fold_case: bool = True):
        self._parser = parser
        self._fold = fold_case
        self.items = []          # str (unmanaged raw line) | Entry | None (deleted)
        self._index = {}         # normalised key -> [positions]
        self.original = text
        self.changed = False
        for raw in split_lines(text):
            self.items.append(self._make(raw))
        self._reindex()

    def norm(self, key: str) -> str:
        key = key.strip()
        return key.lower() if self._fold else key

    def _make(self, raw: str):
        if is_comment_or_blank(raw):
            return raw
        parsed = self._parser(raw)
        if parsed is None:
            return raw
        return Entry(raw, parsed[0], parsed[1])

    def _reindex(self):
        self._index = {}
        for pos, item in enumerate(self.items):
            if isinstance(item, Entry):
                self._index.setdefault(self.norm(item.key), []).append(pos)

    # -- queries

    def entries(self):
        return [item for item in self.items if isinstance(item, Entry)]

    def keys(self):
        """Normalised keys in file order (each once)."""
        return list(self._index)

    def has(self, key: str) -> bool:
        return bool(self._index.get(self.norm(key)))

    def get(self, key: str):
        """The first entry for ``key`` (DMS and Postfix use the first), or None."""
        positions = self._index.get(self.norm(key))
        return self.items[positions[0]] if positions else None

    def get_all(self, key: str):
        return [self.items[p] for p in self._index.get(self.norm(key), [])]

    def index_of(self, key: str):
        """The line position of the first entry for ``key`` (comparable with other positions), or None."""
        positions = self._index.get(self.norm(key))
        return positions[0] if positions else None

    # -- edits

    def set(self, key: str, raw: str, before_key: str | None = None, after_key: str | None = None) -> bool:
        """Make ``raw`` the one line for ``key``.

        An existing first line is replaced in place (only if its text differs)
        and later duplicates are dropped.  A new line is appended, or inserted
        before the first line of ``before_key`` (or right after the first line
        of ``after_key``) when that is given and present.
        Returns True when anything changed.
        """
        parsed = self._parser(raw)
        if parsed is None or self.norm(parsed[0]) != self.norm(key):
            raise ValueError('line %r does not parse as an entry for key %r' % (raw, key))
        entry = Entry(raw, parsed[0], parsed[1])
        norm = self.norm(key)
        positions = self._index.get(norm)
        changed = False
        if positions:
            first = positions[0]
            if self.items[first].raw != raw:
                self.items[first] = entry
                changed = True
            for pos in positions[1:]:
                self.items[pos] = None
                changed = True
            self._index[norm] = [first]
        else:
            anchor = self._index.get(self.norm(before_key)) if before_key else None
            after = self._index.get(self.norm(after_key)) if after_key and not anchor else None
            if anchor:
                self.items.insert(anchor[0], entry)
                self._reindex()
            elif after:
                self.items.insert(after[0] + 1, entry)
                self._reindex()
            else:
                self.items.append(entry)
                self._index[norm] = [len(self.items) - 1]
            changed = True
        self.changed |= changed
        return changed

    def add_many(self, lines, before_key: str | None = None) -> bool:
        """Add new entries ``[(key, raw), ...]`` as one block, in order (one re-index for all).

        The block goes before the first line of ``before_key`` when that is
        present, else at the end.  Keys already in the table are refused
        (use :meth:`set` for those).  Returns True when anything was added.
        """
        block, seen = [], set()
        for key, raw in lines:
            parsed = self._parser(raw)
            norm = self.norm(key)
            if parsed is None or self.norm(parsed[0]) != norm:
                raise ValueError('line %r does not parse as an entry for key %r' % (raw, key))
            if self._index.get(norm) or norm in seen:
                raise ValueError('key %r is already in the table' % key)
            seen.add(norm)
            block.append(Entry(raw, parsed[0], parsed[1]))
        if not block:
            return False
        anchor = self._index.get(self.norm(before_key)) if before_key else None
        at = anchor[0] if anchor else len(self.items)
        self.items[at:at] = block
        self._reindex()
        self.changed = True
        return True

    def remove(self, key: str) -> bool:
        positions = self._index.pop(self.norm(key), None)
        if not positions:
            return False
        for pos in positions:
            self.items[pos] = None
        self.changed = True
        return True

    def remove_entry(self, entry: Entry) -> bool:
        for pos in self._index.get(self.norm(entry.key), []):
            if self.items[pos] is entry:
                self.items[pos] = None
                self._index[self.norm(entry.key)].remove(pos)
                if not self._index[self.norm(entry.key)]:
                    del self._index[self.norm(entry.key)]
                self.changed = True
                return True
        return False

    def replace_entry(self, entry: Entry, raw: str) -> bool:
        """Rewrite one specific entry's line (its key must stay the same)."""
        if entry.raw == raw:
            return False
        parsed = self._parser(raw)
        if parsed is None or self.norm(parsed[0]) != self.norm(entry.key):
            raise ValueError('line %r does not parse as an entry for key %r' % (raw, entry.key))
        for pos in self._index.get(self.norm(entry.key), []):
            if self.items[pos] is entry:
                self.items[pos] = Entry(raw, parsed[0], parsed[1])
                self.changed = True
                return True
        raise ValueError('entry not in table')

    # -- output

    def render(self) -> str:
        """The file text: every kept line, LF-terminated. Unchanged tables render their original text."""
        if not self.changed:
            return self.original
        out = []
        for item in self.items:
            if item is None:
                continue
            out.append(item.raw if isinstance(item, Entry) else item)
        return ''.join(line + '\n' for line in out)
