# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Dovecot password hashes: make them, check them, verify passwords against them.

Hashing and verification use passlib (the maintained ``libpass`` fork
installs as the same ``passlib`` package), so no ``crypt`` module is needed
(it is gone from Python 3.13).  ``bcrypt`` backs BLF-CRYPT and
``argon2-cffi`` backs ARGON2ID.  The parameters match what Dovecot's
``doveadm pw`` writes where that is sound:

* SHA512-CRYPT: ``$6$`` with the implicit 5000 rounds, exactly as DMS's
  ``setup email add`` writes it;
* BLF-CRYPT: ``$2y$`` with cost 10 (``doveadm pw`` uses 5, too cheap today);
* ARGON2ID: ``$argon2id$v=19$m=65536,t=3,p=1$`` as ``doveadm pw`` does.

Large batches are spread over the CPUs with a process pool (the hash
functions hold the GIL).
"""

from __future__ import annotations

import os
import re
import traceback

PASSLIB_IMPORT_ERROR = None
try:
    from passlib.hash import argon2 as _argon2, bcrypt as _bcrypt, sha512_crypt as _sha512, sha256_crypt as _sha256
    from passlib.hash import md5_crypt as _md5
except ImportError:
    PASSLIB_IMPORT_ERROR = traceback.format_exc()

SCHEMES = ('SHA512-CRYPT', 'BLF-CRYPT', 'ARGON2ID')
DEFAULT_SCHEME = 'SHA512-CRYPT'

# Dovecot schemes whose stored form we can recognise, and what their body looks like.
_BODY_RES = {
    'SHA512-CRYPT': re.compile(r'^\$6\$(rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}$'),
    'SHA256-CRYPT': re.compile(r'^\$5\$(rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43}$'),
    'MD5-CRYPT': re.compile(r'^\$1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}$'),
    'BLF-CRYPT': re.compile(r'^\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$'),
    'ARGON2ID': re.compile(r'^\$argon2id\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$'),
    'ARGON2I': re.compile(r'^\$argon2i\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$'),
}
_STORED_RE = re.compile(r'^\{([A-Z0-9.-]+)\}(.*)$', re.S)

# Below this many jobs a process pool costs more than it saves.
PARALLEL_THRESHOLD = 24


class HashError(ValueError):
    pass


def split_stored(stored: str):
    """``{SCHEME}body`` -> (SCHEME, body); (None, stored) when it has no scheme prefix."""
    match = _STORED_RE.match(stored or '')
    if not match:
        return None, stored
    return match.group(1), match.group(2)


def check_hash(value: str, field: str) -> str:
    """Validate a ``{SCHEME}…`` string given as ``password_hash``."""
    scheme, body = split_stored(value)
    if scheme is None:
        raise HashError('%s: must start with a Dovecot scheme prefix such as {SHA512-CRYPT}, '
                        '{BLF-CRYPT} or {ARGON2ID}' % field)
    if scheme not in _BODY_RES:
        raise HashError('%s: the scheme {%s} is not one this collection can check; use one of %s'
                        % (field, scheme, ', '.join('{%s}' % s for s in sorted(_BODY_RES))))
    if not _BODY_RES[scheme].match(body):
        raise HashError('%s: is not a well-formed {%s} hash (expected e.g. %s)'
                        % (field, scheme, _EXAMPLE_FORMS[scheme]))
    return value


_EXAMPLE_FORMS = {
    'SHA512-CRYPT': '$6$<salt>$<86 characters>',
    'SHA256-CRYPT': '$5$<salt>$<43 characters>',
    'MD5-CRYPT': '$1$<salt>$<22 characters>',
    'BLF-CRYPT': '$2y$<cost>$<53 characters>',
    'ARGON2ID': '$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>',
    'ARGON2I': '$argon2i$v=19$m=…,t=…,p=…$<salt>$<hash>',
}


def _handler(scheme: str):
    if scheme == 'SHA512-CRYPT':
        return _sha512.using(rounds=5000)
    if scheme == 'BLF-CRYPT':
        return _bcrypt.using(rounds=10, ident='2y')
    if scheme == 'ARGON2ID':
        return _argon2.using(type='ID', memory_cost=65536, time_cost=3, parallelism=1)
    raise HashError('scheme: %r is not supported for new hashes; use one of %s' % (scheme, ', '.join(SCHEMES)))


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    """A new ``{SCHEME}…`` hash with a random salt."""
    return '{%s}%s' % (scheme, _handler(scheme).hash(password))


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored ``{SCHEME}…`` hash. Unknown schemes never match."""
    scheme, body = split_stored(stored)
    try:
        if scheme == 'SHA512-CRYPT' and body.startswith('$6$'):
            return _sha512.verify(password, body)
        if scheme == 'SHA256-CRYPT' and body.startswith('$5$'):
            return _sha256.verify(password, body)
        if scheme == 'MD5-CRYPT' and body.startswith('$1$'):
            return _md5.verify(password, body)
        if scheme == 'BLF-CRYPT' and body.startswith('$2'):
            return _bcrypt.verify(password, body)
        if scheme in ('ARGON2ID', 'ARGON2I') and body.startswith('$argon2'):
            return _argon2.verify(password, body)
    except (ValueError, TypeError):
        return False
    return False


# -- batches -------------------------------------------------------------------


def _run_job(job):
    kind, password, arg = job
    if kind == 'hash':
        return hash_password(password, arg)
    return verify_password(password, arg)


def _run_chunk(chunk):
    return [_run_job(job) for job in chunk]


def _worker_init(parent):
    """Make a pool worker die with the module process (Linux), so a killed module leaves no orphan hashing on."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError, ImportError):
        pass
    if os.getppid() != parent:
        os._exit(1)  # the module died before the line above took effect


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_jobs(jobs, workers=None):
    """Run ('hash', password, scheme) / ('verify', password, stored) jobs; results in order.

    Big batches are split into chunks and run in a forked process pool, one
    worker per CPU; small ones run inline.  Passwords travel to the workers
    over pipes, never on a command line.
    """
    jobs = list(jobs)
    workers = workers or cpu_count()
    if workers < 2 or len(jobs) < PARALLEL_THRESHOLD:
        return [_run_job(job) for job in jobs]
    import multiprocessing
    try:
        ctx = multiprocessing.get_context('fork')
    except ValueError:
        return [_run_job(job) for job in jobs]
    size = max(1, -(-len(jobs) // (workers * 4)))
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    results = []
    with ctx.Pool(processes=workers, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        for part in pool.imap(_run_chunk, chunks):
            results.extend(part)
    return results
