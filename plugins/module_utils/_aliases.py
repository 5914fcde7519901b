# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Alias tables (``postfix-virtual.cf``, ``postfix-regexp.cf``) and catch-all safety.

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
its self-alias with its other alias references.
"""

from __future__ import annotations

import re

_RECIPIENT_SPLIT = re.compile(r'[,\s]+')


def split_recipients(value: str):
    """Recipients of an alias line: Postfix accepts commas and/or white space between them."""
    return [r for r in _RECIPIENT_SPLIT.split(value.strip()) if r]


def format_virtual(key: str, recipients) -> str:
    """A ``postfix-virtual.cf`` line the way DMS's CLI writes it: one space, commas without spaces."""
    return '%s %s' % (key, ','.join(recipients))


def is_self_alias(entry) -> bool:
    recipients = split_recipients(entry.value)
    return len(recipients) == 1 and recipients[0].lower() == entry.key.strip().lower()


def remove_recipients_everywhere(virtual, addresses):
    """Remove ``addresses`` from every alias's recipient list (``setup email del`` semantics).

    Matching is case-insensitive.  An alias left without recipients is
    removed.  Returns the alias keys touched.
    """
    gone = set(a.lower() for a in addresses)
    touched = []
    for entry in list(virtual.entries()):
        recipients = split_recipients(entry.value)
        kept = [r for r in recipients if r.lower() not in gone]
        if len(kept) == len(recipients):
            continue
        touched.append(entry.key)
        if kept:
            virtual.replace_entry(entry, format_virtual(entry.key, kept))
        else:
            virtual.remove_entry(entry)
    return touched


_PCRE_FLAGS = {'x': re.X, 's': re.S, 'm': re.M}


def compile_regexp_key(key: str):
    """Compile a ``/pattern/flags`` key of postfix-regexp.cf with Python's ``re``.

    Postfix PCRE tables match case-insensitively unless the ``i`` flag toggles
    that off.  Raises ``ValueError`` with the reason when it does not compile
    or is not of that shape.
    """
    if len(key) < 2 or key[0].isalnum() or key[0].isspace() or key[0] == '\\':
        raise ValueError('must start with a delimiter such as "/"')
    delim = key[0]
    end = key.rfind(delim)
    if end <= 0:
        raise ValueError('has no closing %r delimiter' % delim)
    pattern, flags = key[1:end], key[end + 1:]
    if not pattern:
        raise ValueError('has an empty pattern')
    bits = re.I
    for flag in flags:
        if flag == 'i':
            bits ^= re.I
        elif flag in _PCRE_FLAGS:
            bits |= _PCRE_FLAGS[flag]
        elif flag in 'AEUX':
            continue
        else:
            raise ValueError('has the unknown flag %r (Postfix PCRE flags: i m s x A E U X)' % flag)
    if delim != '/':
        pattern = pattern.replace('\\' + delim, delim)
    try:
        return re.compile(pattern, bits)
    except re.error as exc:
        raise ValueError('does not compile: %s' % exc)


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


def reconcile_self_aliases(accounts, virtual, regexp):
    """Add the self-aliases that keep catch-alls from swallowing real accounts.

    Returns the addresses given a new self-alias.  A new self-alias is placed
    just before the catch-all of its domain when there is one, else at the end.
    """
    domains, patterns = swallowing_patterns(virtual, regexp)
    if not domains and not patterns:
        return []
    added = []
    for address in accounts.keys():
        if '@' not in address or virtual.has(address):
            continue
        domain = address.rsplit('@', 1)[1]
        if domain in domains or any(p.search(address) for p in patterns):
            before = '@' + domain if domain in domains else None
            virtual.set(address, format_virtual(address, [address]), before_key=before)
            added.append(address)
    return added
