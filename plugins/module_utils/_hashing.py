# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Dovecot password hashes: make them, check them, verify passwords against them.

Which library does what, and why (see also docs/hashing.md):

* BLF-CRYPT goes straight to the ``bcrypt`` library (``hashpw``/``checkpw``),
  not through passlib.  passlib 1.7.4 -- what ``pip install passlib`` still
  gives, and Debian 12's ``python3-passlib`` -- probes its bcrypt backend
  with a password longer than 72 bytes when it first loads it; bcrypt 5.0
  refuses such passwords, so with that pair *every* BLF-CRYPT operation
  fails.  ``bcrypt`` itself accepts and returns Dovecot's ``$2y$`` prefix in
  every release from 3.x to 5.x, so no passlib layer is needed.
* ARGON2ID goes straight to ``argon2-cffi`` (``argon2.low_level``), whose
  API has been stable since long before Debian 12's 21.1.0.
* SHA512-CRYPT (and verifying SHA256-CRYPT and MD5-CRYPT) uses passlib's
  ``sha512_crypt``, which works the same in passlib 1.7.4 and in its
  maintained fork ``libpass`` (it installs as the same ``passlib`` package),
  and needs no ``crypt`` module (gone from Python 3.13).

The parameters match what Dovecot's ``doveadm pw`` writes where that is sound:

* SHA512-CRYPT: ``$6$`` with the implicit 5000 rounds, exactly as DMS's
  ``setup email add`` writes it;
* BLF-CRYPT: ``$2y$`` with cost 10 (``doveadm pw`` uses 5, too cheap today);
* ARGON2ID: ``$argon2id$v=19$m=65536,t=3,p=1$`` as ``doveadm pw`` does.

Never a silent change: an error raised by a hashing library is never taken
for "the password does not match".  It raises :class:`HashBackendError`,
naming the library versions, and the module fails with nothing written.
:func:`require` checks the libraries a run needs (import and a known-answer
test against hashes written by ``doveadm pw``) before anything is changed.

BLF-CRYPT uses only the first 72 bytes of a password, so Dovecot would
accept any password sharing them: a longer password is refused for it.

Large batches are spread over the CPUs with a process pool (the hash
functions hold the GIL).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

# The import error of each library, None when it imported.
IMPORT_ERRORS = {}
try:
    from passlib.hash import sha512_crypt as _sha512, sha256_crypt as _sha256, md5_crypt as _md5
    IMPORT_ERRORS['passlib'] = None
except ImportError:
    IMPORT_ERRORS['passlib'] = traceback.format_exc()
try:
    import bcrypt as _bcrypt
    if not all(hasattr(_bcrypt, name) for name in ('hashpw', 'checkpw', 'gensalt')):
        raise ImportError('this bcrypt module has no hashpw, checkpw and gensalt (another package of that name?)')
    IMPORT_ERRORS['bcrypt'] = None
except ImportError:
    IMPORT_ERRORS['bcrypt'] = traceback.format_exc()
try:
    from argon2 import low_level as _argon2
    from argon2.exceptions import VerifyMismatchError as _Argon2Mismatch
    IMPORT_ERRORS['argon2'] = None
except ImportError:
    IMPORT_ERRORS['argon2'] = traceback.format_exc()

# Kept for callers that only ask whether passlib is there.
PASSLIB_IMPORT_ERROR = IMPORT_ERRORS['passlib']

SCHEMES = ('SHA512-CRYPT', 'BLF-CRYPT', 'ARGON2ID')
DEFAULT_SCHEME = 'SHA512-CRYPT'

# bcrypt (and so Dovecot's BLF-CRYPT) uses only this many bytes of a password.
BCRYPT_MAX_BYTES = 72

# The library behind each scheme, and how to install it: (import name, what it is called,
# pip distribution names (the first is the one to install), Debian/Ubuntu package).
LIBRARIES = {
    'passlib': ('passlib', ('libpass', 'passlib'), 'python3-passlib'),
    'bcrypt': ('bcrypt', ('bcrypt',), 'python3-bcrypt'),
    'argon2': ('argon2-cffi', ('argon2-cffi',), 'python3-argon2'),
}
SCHEME_LIBRARY = {
    'SHA512-CRYPT': 'passlib', 'SHA256-CRYPT': 'passlib', 'MD5-CRYPT': 'passlib',
    'BLF-CRYPT': 'bcrypt', 'ARGON2ID': 'argon2', 'ARGON2I': 'argon2',
}

# Dovecot schemes whose stored form we can recognise, and what their body looks like.
_BODY_RES = {
    'SHA512-CRYPT': re.compile(r'^\$6\$(rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}$'),
    'SHA256-CRYPT': re.compile(r'^\$5\$(rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43}$'),
    'MD5-CRYPT': re.compile(r'^\$1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}$'),
    'BLF-CRYPT': re.compile(r'^\$2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$'),
    'ARGON2ID': re.compile(r'^\$argon2id\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$'),
    'ARGON2I': re.compile(r'^\$argon2i\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$'),
}
# What the libraries can verify: a stored body outside these can match no password (Dovecot's own
# bcrypt takes $2a$, $2b$ and $2y$ too; $2$ and $2x$ are obsolete variants).
_VERIFIABLE_RES = dict(_BODY_RES, **{'BLF-CRYPT': re.compile(r'^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$'
                                                             r'[./A-Za-z0-9]{53}$')})
_STORED_RE = re.compile(r'^\{([A-Z0-9.-]+)\}(.*)$', re.S)

# Below this many jobs a process pool costs more than it saves.
PARALLEL_THRESHOLD = 24


class HashError(ValueError):
    """A hash or password that cannot be used (the message names the field)."""


class HashBackendError(HashError):
    """A hashing library is missing or misbehaves: the run must stop before anything is written."""


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


def can_verify(stored: str) -> bool:
    """Whether ``stored`` is a hash this collection can verify a password against (well-formed, known scheme)."""
    scheme, body = split_stored(stored)
    return scheme in _VERIFIABLE_RES and bool(_VERIFIABLE_RES[scheme].match(body))


def check_password_for(scheme: str, password: str, field: str):
    """Refuse a password the scheme cannot hold: BLF-CRYPT ignores everything after 72 bytes."""
    if scheme == 'BLF-CRYPT':
        size = len(password.encode('utf-8'))
        if size > BCRYPT_MAX_BYTES:
            raise HashError('%s: is %d bytes long in UTF-8; BLF-CRYPT (bcrypt) uses only the first %d bytes, so '
                            'Dovecot would accept any password that starts with the same %d bytes. Use a password '
                            'of at most %d bytes or another scheme (SHA512-CRYPT, ARGON2ID)'
                            % (field, size, BCRYPT_MAX_BYTES, BCRYPT_MAX_BYTES, BCRYPT_MAX_BYTES))


# -- the libraries ---------------------------------------------------------------


def library_versions() -> str:
    """``Python 3.11.2 (/usr/bin/python3), passlib 1.7.4, bcrypt 5.0.0, argon2-cffi 25.1.0`` (what is installed)."""
    from importlib import metadata
    parts = ['Python %s (%s)' % ('.'.join(str(n) for n in sys.version_info[:3]), sys.executable)]
    for lib in ('passlib', 'bcrypt', 'argon2'):
        label, dists, dummy = LIBRARIES[lib]
        found = None
        for dist in dists:
            try:
                found = '%s %s' % (dist, metadata.version(dist))
            except Exception:  # pylint: disable=broad-except
                found = None
            if found:
                break
        if found is None:
            found = '%s %s' % (label, 'not importable' if IMPORT_ERRORS[lib] else 'of unknown version')
        parts.append(found)
    return ', '.join(parts)


def install_hint(libs=('passlib', 'bcrypt', 'argon2')) -> str:
    pip = ' '.join(LIBRARIES[lib][1][0] for lib in libs)
    deb = ' '.join(LIBRARIES[lib][2] for lib in libs)
    return ('Install a working set into the Python that runs the module: `pip install -U %s`, or on Debian/Ubuntu '
            '`apt-get install %s` (then ansible_python_interpreter=/usr/bin/python3); see docs/hashing.md'
            % (pip, deb))


def _missing_message(lib, schemes):
    label, dists, deb = LIBRARIES[lib]
    reason = 'for %s hashes' % ', '.join('{%s}' % s for s in sorted(schemes))
    try:
        from ansible.module_utils.basic import missing_required_lib
        head = missing_required_lib(label, reason=reason)
    except ImportError:
        head = 'Failed to import the required Python library (%s) %s.' % (label, reason)
    last = (IMPORT_ERRORS[lib] or '').strip().splitlines()[-1:] or ['']
    return '%s (%s) %s. Installed: %s.' % (head, last[0], install_hint((lib,)), library_versions())


# Known answers: hashes of the test password below, as written by Dovecot's ``doveadm pw``.
_SELFTEST_PASSWORD = 'dms-selftest'
_SELFTEST = {
    'passlib': '{SHA512-CRYPT}$6$bn6MCOCcrXPV2cJ7$IqhyJx4RRSxScL92yOd6VWD/ekLYNylvxfbFp9TJDXlssXionhQiU6eaUUic'
               'eRZuIQXMiHllQFYmripMzKDmG.',
    'bcrypt': '{BLF-CRYPT}$2y$04$3l9vwDmOCBo6Rbmh05NfwOabLREp3Dg70jZnehZdsh4GGsL4OK6/u',
    'argon2': '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$qaxoDWi2ndoY5jV1I2ZOHQ$P8qKv39+eHnJNCfd2vTcFmyJJdHQRh7Fl0'
              'ajqjJ8jbo',
}
_checked = set()


def require(schemes):
    """Check, before anything changes, that the libraries for ``schemes`` import and give the right answers.

    Raises :class:`HashBackendError` with install guidance (pip and Debian package names) and the installed
    versions.  Each library is checked once per process.
    """
    by_lib = {}
    for scheme in schemes:
        if scheme in SCHEME_LIBRARY:
            by_lib.setdefault(SCHEME_LIBRARY[scheme], set()).add(scheme)
    for lib in sorted(by_lib):
        if lib in _checked:
            continue
        if IMPORT_ERRORS[lib]:
            raise HashBackendError(_missing_message(lib, by_lib[lib]))
        stored = _SELFTEST[lib]
        try:
            right = _verify(_SELFTEST_PASSWORD, stored)
            wrong = _verify(_SELFTEST_PASSWORD + 'x', stored)
            fresh = _hash(_SELFTEST_PASSWORD, split_stored(stored)[0], cheap=True)
            fresh_ok = _verify(_SELFTEST_PASSWORD, fresh) and can_verify(fresh)
        except Exception as exc:  # pylint: disable=broad-except
            raise HashBackendError(_broken_message(LIBRARIES[lib][0], 'its self-test', exc))
        if not (right is True and wrong is False and fresh_ok is True):
            raise HashBackendError(_broken_message(LIBRARIES[lib][0], 'its self-test',
                                                   'wrong answers for a hash written by doveadm pw'))
        _checked.add(lib)


def _broken_message(label, what, exc, secret=None):
    if isinstance(exc, Exception):
        text = '%s: %s' % (type(exc).__name__, str(exc)[:300])
    else:
        text = str(exc)
    if secret:
        text = text.replace(secret, '********')
    return ('The Python library %s failed %s (%s). This is a library problem, not a wrong password: nothing was '
            'written. Installed: %s. %s.' % (label, what, text, library_versions(), install_hint()))


# -- hashing ---------------------------------------------------------------------


def _hash(password, scheme, cheap=False):
    if scheme == 'SHA512-CRYPT':
        return '{SHA512-CRYPT}' + _sha512.using(rounds=5000).hash(password)
    if scheme == 'BLF-CRYPT':
        check_password_for(scheme, password, 'password')
        salt = _bcrypt.gensalt(4 if cheap else 10)
        body = _bcrypt.hashpw(password.encode('utf-8'), b'$2y$' + salt[4:]).decode('ascii')
        if not body.startswith('$2y$'):  # every bcrypt release keeps the prefix it is given; be sure
            body = '$2y$' + body[4:]
        return '{BLF-CRYPT}' + body
    if scheme == 'ARGON2ID':
        if cheap:
            memory, rounds = 8, 1
        else:
            memory, rounds = 65536, 3
        body = _argon2.hash_secret(password.encode('utf-8'), os.urandom(16), time_cost=rounds, memory_cost=memory,
                                   parallelism=1, hash_len=32, type=_argon2.Type.ID)
        return '{ARGON2ID}' + body.decode('ascii')
    raise HashError('scheme: %r is not supported for new hashes; use one of %s' % (scheme, ', '.join(SCHEMES)))


def _verify(password, stored):
    scheme, body = split_stored(stored)
    if scheme == 'SHA512-CRYPT':
        return bool(_sha512.verify(password, body))
    if scheme == 'SHA256-CRYPT':
        return bool(_sha256.verify(password, body))
    if scheme == 'MD5-CRYPT':
        return bool(_md5.verify(password, body))
    if scheme == 'BLF-CRYPT':
        return bool(_bcrypt.checkpw(password.encode('utf-8'), body.encode('ascii')))
    if scheme in ('ARGON2ID', 'ARGON2I'):
        kind = _argon2.Type.ID if scheme == 'ARGON2ID' else _argon2.Type.I
        try:
            return bool(_argon2.verify_secret(body.encode('ascii'), password.encode('utf-8'), kind))
        except _Argon2Mismatch:
            return False
    return False


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    """A new ``{SCHEME}…`` hash with a random salt.

    Raises :class:`HashError` for a password the scheme cannot hold and :class:`HashBackendError` when the
    library fails.
    """
    if scheme not in SCHEMES:
        raise HashError('scheme: %r is not supported for new hashes; use one of %s' % (scheme, ', '.join(SCHEMES)))
    check_password_for(scheme, password, 'password')
    require((scheme,))
    try:
        return _hash(password, scheme)
    except Exception as exc:  # pylint: disable=broad-except
        raise HashBackendError(_broken_message(LIBRARIES[SCHEME_LIBRARY[scheme]][0],
                                               'to make a {%s} hash' % scheme, exc, password))


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored ``{SCHEME}…`` hash.

    A hash of an unknown scheme, or one that is not well-formed, matches no password (Dovecot could not use it
    either).  An error of the library is never a mismatch: it raises :class:`HashBackendError`.  A BLF-CRYPT
    hash cannot tell a password longer than 72 bytes from its first 72 bytes: that raises :class:`HashError`.
    """
    if not can_verify(stored):
        return False
    scheme = split_stored(stored)[0]
    check_password_for(scheme, password, 'password')
    require((scheme,))
    try:
        return _verify(password, stored)
    except Exception as exc:  # pylint: disable=broad-except
        raise HashBackendError(_broken_message(LIBRARIES[SCHEME_LIBRARY[scheme]][0],
                                               'while checking a stored {%s} hash' % scheme, exc, password))


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
