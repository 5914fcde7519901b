# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Password options and the verify-then-keep engine, shared by every module that stores a Dovecot hash.

``dms_account`` (``postfix-accounts.cf``) and ``dms_dovecot_master``
(``dovecot-masters.cf``) take the same options -- ``password`` or
``password_hash``, ``scheme``, ``update_password`` -- and decide the same way
whether a stored hash is kept:

* a new entry gets the given hash, or a new hash of the given password;
* with ``update_password=always`` a given password is *verified* against the
  stored hash, which is kept when it matches (a re-run is not a change); a
  password that does not match, or an explicit ``scheme`` other than the stored
  hash's, is hashed anew; a given ``password_hash`` replaces a different one;
* with ``update_password=on_create`` an existing hash is never touched.

The hashing itself (libraries, parallel workers) is :mod:`._hashing`.
"""

from __future__ import annotations

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import (
    DEFAULT_SCHEME, SCHEMES, HashError, can_verify, check_hash, check_password_for, require, run_jobs, split_stored,
)


def check_password(value, field):
    """A password a table line can carry: a non-empty string without line breaks or NUL bytes."""
    if not isinstance(value, str) or not value:
        raise v.ValidationError('%s: must be a non-empty string' % field)
    for ch in value:
        if ch in '\r\n\x00':
            raise v.ValidationError('%s: contains a line break or NUL byte (a trailing newline from a file '
                                    'lookup?); passwords may not contain them' % field)
    return value


def check_password_options(entry, field):
    """Validate ``password`` / ``password_hash`` / ``scheme`` of one entry; ``field(name)`` names an option."""
    if entry['password'] is not None and entry['password_hash'] is not None:
        raise v.ValidationError('%s: give password or password_hash, not both' % field('password'))
    if entry['password'] is not None:
        check_password(entry['password'], field('password'))
        if entry['scheme'] is not None:
            try:
                check_password_for(entry['scheme'], entry['password'], field('password'))
            except HashError as exc:
                raise v.ValidationError(str(exc))
    if entry['password_hash'] is not None:
        try:
            check_hash(entry['password_hash'], field('password_hash'))
        except HashError as exc:
            raise v.ValidationError(str(exc))
        if entry['scheme'] is not None and split_stored(entry['password_hash'])[0] != entry['scheme']:
            raise v.ValidationError('%s: the hash is not a {%s} hash as scheme asks'
                                    % (field('password_hash'), entry['scheme']))


def require_schemes(entries):
    """The libraries for the schemes the entries ask for must work before the config dir is even locked."""
    try:
        require(set(e['scheme'] for e in entries if e['scheme'] is not None and e['password'] is not None))
    except HashError as exc:
        raise v.ValidationError(str(exc))


def _rehash_scheme(entry, stored):
    """The scheme of a new hash for a changed password: the one asked for, else the stored hash's own (a
    password change is no reason to change the scheme), else the default."""
    if entry['scheme'] is not None:
        return entry['scheme']
    scheme = split_stored(stored)[0]
    return scheme if scheme in SCHEMES and can_verify(stored) else DEFAULT_SCHEME


def _guarded(func):
    """``func`` with a hashing error turned into a validation error: the run fails with nothing written."""
    def call(*args):
        try:
            return func(*args)
        except HashError as exc:
            raise v.ValidationError(str(exc))
    return call


def decide_hashes(present, stored_of, update_password, key):
    """The hashes to write for the ``present`` entries: ``({name: stored hash}, warnings)``.

    ``stored_of(name)`` gives the stored ``{SCHEME}hash`` of an existing entry, or None for a new one;
    ``key`` is the option naming an entry (``address``, ``name``). Only entries whose stored hash must change
    (or that are new) are in the result. Hashing and verification run in parallel (:func:`._hashing.run_jobs`);
    a hashing library's error fails the run (ValidationError) before anything is written.
    """
    warnings = []
    jobs, job_owner = [], []
    decisions = {}
    for e in present:
        name = e[key]
        stored = stored_of(name)
        if stored is None:
            if e['password_hash'] is not None:
                decisions[name] = e['password_hash']
            elif e['password'] is not None:
                jobs.append(('hash', e['password'], e['scheme'] or DEFAULT_SCHEME))
                job_owner.append((e, 'new', None))
            else:
                raise v.ValidationError('%s: %r does not exist yet; give password or password_hash to create it'
                                        % (e['field'](key), name))
            continue
        if update_password == 'on_create':
            continue
        if e['password_hash'] is not None:
            if e['password_hash'] != stored:
                decisions[name] = e['password_hash']
        elif e['password'] is not None:
            if e['scheme'] is not None and split_stored(stored)[0] != e['scheme']:
                jobs.append(('hash', e['password'], e['scheme']))
                job_owner.append((e, 'rehash', stored))
            else:
                jobs.append(('verify', e['password'], stored))
                job_owner.append((e, 'verify', stored))
    # Before anything is hashed or changed: the libraries for every scheme in play must work, and a password
    # must fit the scheme of the hash it is checked against (a BLF-CRYPT hash holds only 72 bytes of it).
    schemes = set()
    for job, (e, kind, stored) in zip(jobs, job_owner):
        if kind == 'verify':
            stored_scheme = split_stored(stored)[0]
            if can_verify(stored):
                schemes.add(stored_scheme)
                try:
                    check_password_for(stored_scheme, e['password'], e['field']('password'))
                except HashError as exc:
                    raise v.ValidationError('%s; the stored hash is {%s}: set scheme to SHA512-CRYPT or ARGON2ID '
                                            'to replace it' % (exc, stored_scheme))
            schemes.add(_rehash_scheme(e, stored))
        else:
            schemes.add(job[2])
    _guarded(require)(schemes)
    _run = _guarded(run_jobs)
    results = _run(jobs)
    rehash, rehash_owner = [], []
    for (e, kind, stored), outcome in zip(job_owner, results):
        if kind == 'verify':
            if not outcome:
                scheme = _rehash_scheme(e, stored)
                if not can_verify(stored):
                    warnings.append('%s: the stored hash of %r is not a hash this collection can verify (scheme {%s}); '
                                    'it was replaced with a {%s} hash of the given password'
                                    % (e['field']('password'), e[key], split_stored(stored)[0], scheme))
                rehash.append(('hash', e['password'], scheme))
                rehash_owner.append(e)
        else:
            decisions[e[key]] = outcome
    # Phase 2: new hashes for passwords that did not verify.
    for e, outcome in zip(rehash_owner, _run(rehash)):
        decisions[e[key]] = outcome
    return decisions, warnings
