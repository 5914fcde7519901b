# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Alias tables (``postfix-virtual.cf``, ``postfix-regexp.cf``), catch-all safety, and ``dms_alias``.

Formats
-------
``postfix-virtual.cf`` holds ``alias recipient[,recipient...]`` where the
alias is ``user@domain`` or the catch-all ``@domain``; Postfix reads it as a
``texthash`` table (a hash: line order does not matter, the first line of a
key counts).  ``postfix-regexp.cf`` holds ``/pattern/flags recipient...``
and is read as a ``pcre`` table: the first matching line wins, so its order
matters.  Recipients are written the way DMS's ``setup alias add`` writes
them: one space after the key, commas without spaces between recipients.
Edits keep the rest of a line as it is (a recipient is removed together with
one neighbouring separator, as ``setup alias del`` does).

Catch-all safety
----------------
Postfix looks up ``virtual_alias_maps`` before it delivers to a mailbox, so a
catch-all ``@example.com`` (or a regexp alias matching the address) rewrites
mail for *real accounts* of that domain too.  The fix DMS's docs give is an
alias for each account of the domain.  This collection keeps that in step
automatically: every account that a catch-all or a regexp alias would
swallow, and that is not itself an alias key, gets a *self-alias* line
``user@example.com user@example.com`` in ``postfix-virtual.cf``.  Postfix
resolves a self-alias to the address itself and delivers it to the mailbox.

A self-alias is recognised by its shape (the key is its only recipient), so
files stay plain DMS files.  ``dms_account`` and ``dms_alias`` both call
:func:`reconcile_self_aliases` after their edits; removing an account removes
its self-alias with its other alias references.  When a ``dms_alias`` run
removes the catch-all or regexp alias that made a self-alias necessary, the
self-aliases no longer needed are removed again (:func:`prune_self_aliases`);
self-aliases that were not needed before the run are never touched, so a
hand-written one is left alone.
"""

from __future__ import annotations

import re

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._common import entries_of, item_path

_RECIPIENT_SPLIT = re.compile(r'[,\s]+')
_TOKENS = re.compile(r'[^,\s]+|[,\s]+')

TYPES = ('virtual', 'regexp')
ENTRY_FIELDS = ('alias', 'type', 'recipients', 'append', 'before', 'after', 'state')


# -- lines ---------------------------------------------------------------------


def split_recipients(value: str):
    """Recipients of an alias line: Postfix accepts commas and/or white space between them."""
    return [r for r in _RECIPIENT_SPLIT.split(value.strip()) if r]


def format_virtual(key: str, recipients) -> str:
    """A ``postfix-virtual.cf`` line the way DMS's CLI writes it: one space, commas without spaces.

    ``postfix-regexp.cf`` lines are written the same way, with the pattern as key.
    """
    return '%s %s' % (key, ','.join(recipients))


def is_self_alias(entry) -> bool:
    recipients = split_recipients(entry.value)
    return len(recipients) == 1 and recipients[0].lower() == entry.key.strip().lower()


def _split_line(raw: str, key: str):
    """(head, value, tail) of an alias line: head is the key with the white space around it."""
    lead = len(raw) - len(raw.lstrip())
    pos = lead + len(key)
    if raw[lead:pos] != key:
        # The key always starts the stripped line; be safe with odd input anyway.
        pos = lead + len(raw[lead:].split(None, 1)[0])
    rest = raw[pos:]
    value = rest.strip()
    gap = len(rest) - len(rest.lstrip())
    return raw[:pos + gap], value, rest[gap + len(value):]


def remove_from_line(raw: str, key: str, addresses):
    """The line with the recipients ``addresses`` removed (case-insensitive), None when none is left.

    Each removed recipient takes one neighbouring separator with it (the one
    before it, or after it when it comes first), as ``setup alias del`` does:
    ``a t1,t2,t3`` without ``t2`` is ``a t1,t3``; without ``t1`` it is ``a t2,t3``.
    Everything else on the line is kept as it is.
    """
    gone = set(a.lower() for a in addresses)
    head, value, dummy = _split_line(raw, key)
    tokens = _TOKENS.findall(value)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        is_sep = not tok.strip(', \t')
        if is_sep or tok.lower() not in gone:
            i += 1
            continue
        if i > 0:
            del tokens[i - 1:i + 1]
            i -= 1
        elif i + 1 < len(tokens):
            del tokens[i:i + 2]
        else:
            del tokens[i]
    if not any(tok.strip(', \t') for tok in tokens):
        return None
    return head + ''.join(tokens).strip(', \t')


def append_to_line(raw: str, key: str, recipients) -> str:
    """The line with ``recipients`` appended as ``,recipient`` each (what ``setup alias add`` does)."""
    if not recipients:
        return raw
    head, value, dummy = _split_line(raw, key)
    if not split_recipients(value):
        return format_virtual(key, recipients)
    return raw.rstrip() + ''.join(',' + r for r in recipients)


def remove_recipients_everywhere(virtual, addresses):
    """Remove ``addresses`` from every alias's recipient list (``setup email del`` semantics).

    Matching is case-insensitive.  An alias left without recipients is
    removed.  Returns the alias keys touched.
    """
    gone = set(a.lower() for a in addresses)
    touched = []
    for entry in list(virtual.entries()):
        recipients = split_recipients(entry.value)
        if not any(r.lower() in gone for r in recipients):
            continue
        touched.append(entry.key)
        line = remove_from_line(entry.raw, entry.key, gone)
        if line is None:
            virtual.remove_entry(entry)
        else:
            virtual.replace_entry(entry, line)
    return touched


# -- regexp keys ---------------------------------------------------------------

_PCRE_FLAGS = {'x': re.X, 's': re.S, 'm': re.M}
_POSTFIX_PCRE_FLAGS = 'imsxAEUX'
_NAMED_GROUP = re.compile(r'\(\?<([A-Za-z_][A-Za-z0-9_]*)>')
_SUBST = re.compile(r'\$(?:\{([0-9]+)\}|\(([0-9]+)\)|([0-9]+)|(\$)|(.?))')


def split_regexp_key(key: str):
    """``(delimiter, pattern, flags)`` of a ``/pattern/flags`` key, scanned the way Postfix's pcre table does.

    The pattern ends at the first delimiter that is not escaped with a
    backslash.  Raises ``ValueError`` with the reason.
    """
    if len(key) < 2:
        raise ValueError('is too short for /pattern/')
    delim = key[0]
    if delim.isalnum() or delim.isspace() or delim in '\\#!':
        raise ValueError('must start with a delimiter such as "/" (not a letter, digit, white space, "\\", '
                         '"#" or "!")')
    i = 1
    while i < len(key):
        if key[i] == '\\':
            i += 2
            continue
        if key[i] == delim:
            break
        i += 1
    if i >= len(key):
        raise ValueError('has no closing %r delimiter (write it as /pattern/flags)' % delim)
    pattern, flags = key[1:i], key[i + 1:]
    if not pattern:
        raise ValueError('has an empty pattern')
    for flag in flags:
        if flag not in _POSTFIX_PCRE_FLAGS:
            raise ValueError('has the unknown flag %r after the closing delimiter (Postfix PCRE flags: %s)'
                             % (flag, ' '.join(_POSTFIX_PCRE_FLAGS)))
    return delim, pattern, flags


def compile_regexp_key(key: str):
    """Compile a ``/pattern/flags`` key of postfix-regexp.cf with Python's ``re``.

    Postfix PCRE tables match case-insensitively unless the ``i`` flag toggles
    that off; ``A`` anchors the match at the start.  Raises ``ValueError``
    with the reason when it does not compile or is not of that shape.
    """
    dummy, pattern, flags = split_regexp_key(key)
    bits = re.I
    for flag in flags:
        if flag == 'i':
            bits ^= re.I
        elif flag in _PCRE_FLAGS:
            bits ^= _PCRE_FLAGS[flag]
    # PCRE's (?<name>...) is Python's (?P<name>...); the rest of the common syntax is shared.
    pattern = _NAMED_GROUP.sub(r'(?P<\1>', pattern)
    if 'A' in flags and flags.count('A') % 2:
        pattern = r'\A(?:%s)' % pattern
    try:
        return re.compile(pattern, bits)
    except re.error as exc:
        raise ValueError('does not compile: %s' % exc)


def regexp_key(value, field: str):
    """Validate a regexp alias key (delimiters, flags, compiles); returns it unchanged."""
    v.check_text(value, field)
    if value != value.strip():
        raise v.ValidationError('%s: %r has leading or trailing white space' % (field, value))
    try:
        compiled = compile_regexp_key(value)
    except ValueError as exc:
        raise v.ValidationError('%s: %r is not a valid regexp alias: it %s' % (field, value, exc))
    return value, compiled


def regexp_recipient(value, field: str, groups: int) -> str:
    """A recipient of a regexp alias: an address that may use ``$1``/``${1}``/``$(1)`` substitutions."""
    v.check_text(value, field, max_len=254)
    refs = []
    problems = []

    def fill(match):
        number = match.group(1) or match.group(2) or match.group(3)
        if number is not None:
            refs.append(int(number))
            return 'x'
        if match.group(4):
            return '$'
        problems.append(match.group(0))
        return 'x'
    probe = _SUBST.sub(fill, value)
    if problems:
        raise v.ValidationError('%s: %r uses "$" that is not a substitution: write $1, ${1} or $(1) for a '
                                'group of the pattern, $$ for a literal "$"' % (field, value))
    for number in refs:
        if number > groups:
            raise v.ValidationError('%s: %r refers to group %d but the pattern has %d group(s); Postfix would '
                                    'skip the whole rule' % (field, value, number, groups))
    if refs:
        v.address(probe, field + ' (with the substitutions filled in)')
        return value.lower()
    return v.address(value, field)


# -- catch-all safety ------------------------------------------------------------


def swallowing_patterns(virtual, regexp):
    """What would capture an account's mail: catch-all domains and compiled regexp aliases."""
    domains = set()
    for key in virtual.keys():
        if key.startswith('@'):
            domains.add(key[1:])
    patterns = []
    if regexp is not None:
        for entry in regexp.entries():
            try:
                patterns.append(compile_regexp_key(entry.key.strip()))
            except ValueError:
                continue
    return domains, patterns


def swallowed_accounts(accounts, virtual, regexp):
    """Accounts whose mail a catch-all or a regexp alias would take if they had no alias line of their own."""
    domains, patterns = swallowing_patterns(virtual, regexp)
    if not domains and not patterns:
        return set()
    out = set()
    for address in accounts.keys():
        if '@' not in address:
            continue
        if address.rsplit('@', 1)[1] in domains or any(p.search(address) for p in patterns):
            out.add(address)
    return out


def reconcile_self_aliases(accounts, virtual, regexp):
    """Add the self-aliases that keep catch-alls from swallowing real accounts.

    Returns the addresses given a new self-alias.  A new self-alias is placed
    just before the catch-all of its domain when there is one, else at the end.
    """
    domains, patterns = swallowing_patterns(virtual, regexp)
    if not domains and not patterns:
        return []
    added = []
    blocks = {}
    for address in accounts.keys():
        if '@' not in address or virtual.has(address):
            continue
        domain = address.rsplit('@', 1)[1]
        if domain in domains or any(p.search(address) for p in patterns):
            before = '@' + domain if domain in domains else None
            blocks.setdefault(before, []).append((address, format_virtual(address, [address])))
            added.append(address)
    # One insertion per place keeps this linear for tens of thousands of accounts.
    for before, lines in blocks.items():
        virtual.add_many(lines, before_key=before)
    return added


def prune_self_aliases(accounts, virtual, regexp, needed_before, keep=()):
    """Remove self-aliases that were needed before a run's edits and are not any more.

    ``needed_before`` is :func:`swallowed_accounts` from before the edits;
    keys in ``keep`` (aliases the run was asked to manage) stay.  Returns the
    addresses whose self-alias was removed.
    """
    needed_now = swallowed_accounts(accounts, virtual, regexp)
    keep = set(keep)
    removed = []
    for address in sorted(set(needed_before) - needed_now):
        if address in keep:
            continue
        entry = virtual.get(address)
        if entry is not None and is_self_alias(entry) and accounts.has(address):
            virtual.remove(address)
            removed.append(address)
    return removed


# -- dms_alias: options -> entries ------------------------------------------------


def _looks_like_regexp(value) -> bool:
    return isinstance(value, str) and value.startswith('/')


def normalize(params):
    """Validate the module's options; return (entries, warnings). Raises ValidationError."""
    warnings = []
    default_type = params.get('type') or 'virtual'
    if params.get('aliases') is not None:
        for name in ('alias', 'recipients', 'before', 'after'):
            if params.get(name) is not None:
                raise v.ValidationError('%s: set it on each item of aliases, not next to the list' % name)
    list_option, raw_entries = entries_of(params, 'aliases', ENTRY_FIELDS, 'alias', defaults={
        'type': default_type, 'append': params.get('append'), 'state': params.get('state')})
    if list_option is None:
        raw_entries[0][1]['type'] = default_type
    elif params.get('exclusive') and not raw_entries and not params.get('type'):
        raise v.ValidationError('exclusive: the aliases list is empty, so it does not say which file to '
                                'clear; set type (virtual or regexp) to remove every alias of that file')

    entries = []
    seen = {}
    for index, entry in raw_entries:
        def field(name, index=index):
            return item_path(params, list_option, index, name)
        kind = entry['type']
        if kind not in TYPES:
            raise v.ValidationError('%s: %r is not an alias type: use virtual or regexp' % (field('type'), kind))
        original = entry['alias']
        groups = 0
        if kind == 'virtual':
            if _looks_like_regexp(original):
                raise v.ValidationError('%s: %r looks like a regexp alias; set type=regexp for '
                                        'postfix-regexp.cf' % (field('alias'), original))
            key = v.catchall_or_address(original, field('alias'))
            if key != original:
                warnings.append("%s: '%s' has uppercase letters and was normalised to '%s'"
                                % (field('alias'), original, key))
            for name in ('before', 'after'):
                if entry[name] is not None:
                    raise v.ValidationError('%s: only regexp aliases have an order; postfix-virtual.cf is a '
                                            'hash table where line order does not matter' % field(name))
        else:
            key, compiled = regexp_key(original, field('alias'))
            groups = compiled.groups
            if entry['before'] is not None and entry['after'] is not None:
                raise v.ValidationError('%s: give before or after, not both' % field('before'))
            for name in ('before', 'after'):
                if entry[name] is not None:
                    regexp_key(entry[name], field(name))
                    if entry[name] == key:
                        raise v.ValidationError('%s: %r is the alias itself' % (field(name), entry[name]))
        ident = (kind, key)
        if ident in seen:
            raise v.ValidationError('%s: %r is listed twice (also at %s)' % (field('alias'), key, seen[ident]))
        seen[ident] = field('alias')

        recipients = entry['recipients']
        if recipients is not None:
            if not isinstance(recipients, list):
                raise v.ValidationError('%s: must be a list of addresses' % field('recipients'))
            clean, lower = [], {}
            for i, item in enumerate(recipients):
                rfield = '%s[%d]' % (field('recipients'), i)
                if kind == 'regexp':
                    value = regexp_recipient(item, rfield, groups)
                else:
                    value = v.address(item, rfield)
                if value != item:
                    warnings.append("%s: '%s' has uppercase letters and was normalised to '%s'"
                                    % (rfield, item, value))
                if value in lower:
                    raise v.ValidationError('%s: %r is listed twice (also at %s)' % (rfield, value, lower[value]))
                lower[value] = rfield
                clean.append(value)
            recipients = clean
        if entry['state'] == 'present':
            if not recipients:
                raise v.ValidationError('%s: state=present needs at least one recipient' % field('recipients'))
        else:
            if recipients and not entry['append']:
                raise v.ValidationError(
                    '%s: with state=absent, set append=true to remove only these recipients (as setup alias del '
                    'does), or leave recipients out to remove the whole alias' % field('recipients'))
            for name in ('before', 'after'):
                if entry[name] is not None:
                    raise v.ValidationError('%s: has no meaning with state=absent' % field(name))
        entries.append(dict(entry, alias=original, key=key, recipients=recipients or None, field=field))
    return entries, warnings


# -- dms_alias: the plan ---------------------------------------------------------


def _final_recipients(table, e):
    """The recipients an alias will have after a present entry is applied."""
    existing = table.get(e['key'])
    if e['append'] and existing is not None:
        current = split_recipients(existing.value)
        have = set(r.lower() for r in current)
        return current + [r for r in e['recipients'] if r.lower() not in have]
    return list(e['recipients'])


def _apply_present(table, e):
    """Create or update one alias. Returns 'created', 'updated' or None."""
    key = e['key']
    existing = table.get(key)
    if existing is None:
        table.set(key, format_virtual(key, e['recipients']))
        return 'created'
    current = split_recipients(existing.value)
    if e['append']:
        have = set(r.lower() for r in current)
        new = [r for r in e['recipients'] if r.lower() not in have]
        line = append_to_line(existing.raw, existing.key, new)
    elif [r.lower() for r in current] == [r.lower() for r in e['recipients']]:
        line = existing.raw  # same recipients, same order: keep the line as it is written
    else:
        line = format_virtual(existing.key.strip(), e['recipients'])
    return 'updated' if table.set(key, line) else None


_IF_RE = re.compile(r'^\s*if\s*!?\S')
_ENDIF_RE = re.compile(r'^\s*endif\s*$')


def _in_block(table, key) -> bool:
    """True when the first line of ``key`` stands inside a pcre ``if``/``endif`` block."""
    target = table.index_of(key)
    depth = 0
    for pos, item in enumerate(table.items):
        if pos == target:
            return depth > 0
        if isinstance(item, str):
            if _IF_RE.match(item):
                depth += 1
            elif _ENDIF_RE.match(item) and depth:
                depth -= 1
    return False


def _move(table, key, before=None, after=None, moved=None, field=None):
    for name in (key, before, after):
        if name is not None and _in_block(table, name):
            raise v.ValidationError('%s: placing %r next to %r would move a line into or out of an if/endif '
                                    'block of postfix-regexp.cf, which changes what it matches; place it by hand'
                                    % (field, key, before or after))
    entry = table.get(key)
    table.remove(key)
    table.set(key, entry.raw, before_key=before, after_key=after)
    if moved is not None and key not in moved:
        moved.append(key)


def _adjacent_after(table, first, second):
    """True when the entry ``second`` directly follows ``first`` (only deleted lines between)."""
    a, b = table.index_of(first), table.index_of(second)
    return a is not None and b is not None and b > a and all(item is None for item in table.items[a + 1:b])


def _order_regexp(regexp, present, created, moved):
    """Place regexp aliases where the user's order says; move existing lines only when the order is wrong.

    ``present`` are the present regexp entries in the order given.  An entry
    with ``before``/``after`` goes next to that alias; otherwise it goes after
    the previous entry of the list, and the first one before the next listed
    alias that is already in the file.  A new alias with nothing to go by
    stays at the end of the file.  Existing aliases that had to move are added
    to ``moved``.
    """
    keys = [e['key'] for e in present]
    prev = None
    for i, e in enumerate(present):
        key = e['key']
        is_new = key in created
        track = None if is_new else moved
        field = e['field']('alias')
        pos = regexp.index_of(key)
        anchor = e['before'] or e['after']
        if anchor is not None:
            apos = regexp.index_of(anchor)
            if apos is None:
                name = 'before' if e['before'] else 'after'
                raise v.ValidationError('%s: %r is not a regexp alias in postfix-regexp.cf'
                                        % (e['field'](name), anchor))
            if e['before']:
                if pos > apos or (is_new and not _adjacent_after(regexp, key, anchor)):
                    _move(regexp, key, before=anchor, moved=track, field=field)
            elif pos < apos or (is_new and not _adjacent_after(regexp, anchor, key)):
                _move(regexp, key, after=anchor, moved=track, field=field)
        elif prev is not None:
            if pos < regexp.index_of(prev) or (is_new and not _adjacent_after(regexp, prev, key)):
                _move(regexp, key, after=prev, moved=track, field=field)
        else:
            nxt = next((k for k in keys[i + 1:] if k not in created and regexp.index_of(k) is not None), None)
            if nxt is not None and (pos > regexp.index_of(nxt) or is_new) \
                    and not _adjacent_after(regexp, key, nxt):
                _move(regexp, key, before=nxt, moved=track, field=field)
        prev = key


def plan(cfg, params, entries):
    """Edit the tables of ``cfg`` to the desired state. Returns the result values."""
    accounts = cfg.table('accounts')
    tables = {'virtual': cfg.table('virtual'), 'regexp': cfg.table('regexp')}
    virtual, regexp = tables['virtual'], tables['regexp']
    created, updated, removed, warnings = [], [], [], []
    needed_before = swallowed_accounts(accounts, virtual, regexp)
    for entry in regexp.entries():
        try:
            compile_regexp_key(entry.key.strip())
        except ValueError as exc:
            warnings.append('postfix-regexp.cf: the alias %r cannot be checked for catch-all safety (it %s); '
                            'accounts it matches get no self-alias' % (entry.key, exc))

    present = [e for e in entries if e['state'] == 'present']

    # Refuse an alias whose address is an account's (exact, case-insensitive), unless it is that account's
    # self-alias: it would take the account's mail.
    if not params.get('allow_account_overlap'):
        for e in present:
            if e['type'] != 'virtual' or not accounts.has(e['key']):
                continue
            final = _final_recipients(virtual, e)
            if [r.lower() for r in final] != [e['key']]:
                raise v.ValidationError(
                    '%s: %r is an account in postfix-accounts.cf; an alias with the same address takes its mail '
                    'away from the mailbox; set allow_account_overlap=true to have both'
                    % (e['field']('alias'), e['key']))

    reported = set()

    def note(lst, key):
        if key not in reported:
            reported.add(key)
            lst.append(key)

    deferred = []   # (key, explicit entry or None): self-aliases of accounts asked to go
    for e in entries:
        table = tables[e['type']]
        key = e['key']
        if e['state'] == 'present':
            outcome = _apply_present(table, e)
            if outcome == 'created':
                note(created, key)
            elif outcome == 'updated':
                note(updated, key)
            continue
        existing = table.get(key)
        if existing is None:
            continue
        if e['recipients']:
            line = remove_from_line(existing.raw, existing.key, e['recipients'])
            if line is None:
                if e['type'] == 'virtual' and accounts.has(key) and is_self_alias(existing):
                    deferred.append((key, e))
                else:
                    table.remove(key)
                    note(removed, key)
            elif line != existing.raw and table.set(key, line):
                note(updated, key)
        elif e['type'] == 'virtual' and accounts.has(key) and is_self_alias(existing):
            deferred.append((key, e))
        elif table.remove(key):
            note(removed, key)

    moved = []
    present_rx = [e for e in present if e['type'] == 'regexp']
    if present_rx:
        _order_regexp(regexp, present_rx, set(created), moved)
    for key in moved:
        note(updated, key)

    if params.get('exclusive'):
        scope = set(e['type'] for e in entries)
        if params.get('type'):
            scope.add(params['type'])
        keep = set((e['type'], tables[e['type']].norm(e['key'])) for e in present)
        for kind in TYPES:
            if kind not in scope:
                continue
            table = tables[kind]
            for key in table.keys():
                if (kind, key) in keep:
                    continue
                if kind == 'virtual' and '@' not in key:
                    continue  # a local-only alias (``root``): not something this module manages
                entry = table.get(key)
                if kind == 'virtual' and accounts.has(key) and is_self_alias(entry):
                    deferred.append((key, None))
                    continue
                table.remove(key)
                note(removed, key)

    # Self-aliases asked to go: they go unless a catch-all or regexp alias still needs them.
    needed_now = swallowed_accounts(accounts, virtual, regexp)
    for key, e in deferred:
        if key in needed_now:
            if e is not None:
                warnings.append('%s: %r was kept: it is the self-alias that lets the account %s receive its own '
                                'mail despite a catch-all or regexp alias; remove that alias or the account '
                                'instead' % (e['field']('alias'), key, key))
        elif virtual.remove(key):
            note(removed, key)

    declared = set(e['key'] for e in entries if e['type'] == 'virtual')
    self_removed = prune_self_aliases(accounts, virtual, regexp, needed_before, keep=declared)
    self_added = reconcile_self_aliases(accounts, virtual, regexp)
    for e in entries:
        if e['type'] == 'virtual' and e['state'] == 'absent' and e['key'] in self_added:
            warnings.append('%s: %r was added back as a self-alias: the account %s needs it to receive its own '
                            'mail despite a catch-all or regexp alias' % (e['field']('alias'), e['key'], e['key']))

    return dict(created=created, updated=updated, removed=removed,
                self_aliases_added=self_added, self_aliases_removed=self_removed, _warnings=warnings)


# -- reading (dms_info) ------------------------------------------------------------------


def read_aliases(accounts, virtual, regexp):
    """Every alias line in file order: ``postfix-virtual.cf`` first, then ``postfix-regexp.cf``.

    Each is ``{type, alias, recipients}``; a virtual alias also says whether it is a catch-all (``@domain``)
    and whether it is the self-alias of an account (the line that keeps a catch-all or regexp alias from
    taking the account's mail, see the module docstring).  Only the first line of a key counts, as for
    Postfix; later duplicates are listed with ``duplicate: true``.
    """
    out = []
    seen = set()
    for entry in virtual.entries():
        norm = virtual.norm(entry.key)
        item = dict(type='virtual', alias=entry.key, recipients=split_recipients(entry.value),
                    catch_all=entry.key.startswith('@'),
                    self_alias=is_self_alias(entry) and accounts.has(entry.key))
        if norm in seen:
            item['duplicate'] = True
        seen.add(norm)
        out.append(item)
    for entry in regexp.entries():
        out.append(dict(type='regexp', alias=entry.key, recipients=split_recipients(entry.value)))
    return out
