# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _hashing as h


@pytest.mark.parametrize('scheme,prefix', [('SHA512-CRYPT', '{SHA512-CRYPT}$6$'), ('BLF-CRYPT', '{BLF-CRYPT}$2y$10$'),
                                           ('ARGON2ID', '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$')])
def test_hash_and_verify(scheme, prefix):
    stored = h.hash_password('correct horse', scheme)
    assert stored.startswith(prefix)
    assert h.check_hash(stored, 'password_hash') == stored
    assert h.verify_password('correct horse', stored)
    assert not h.verify_password('wrong horse', stored)


def test_sha512_uses_implicit_5000_rounds_like_doveadm():
    assert 'rounds=' not in h.hash_password('x')


def test_salts_differ():
    assert h.hash_password('same') != h.hash_password('same')


def test_works_without_the_crypt_module(monkeypatch):
    """Python 3.13 has no crypt module: passlib's own implementation must be used and agree."""
    from passlib.hash import sha512_crypt
    sha512_crypt.set_backend('builtin')
    stored = h.hash_password('pw')
    assert h.verify_password('pw', stored)


@pytest.mark.parametrize('value,needle', [
    ('$6$abc$def', 'scheme prefix'),
    ('{SHA512-CRYPT}$6$short$tooshort', 'well-formed'),
    ('{PLAIN}secret', 'not one this collection can check'),
    ('{SHA512-CRYPT}$6$' + 'a' * 16 + '$' + 'b' * 86 + '\nx@y|z', 'well-formed'),
    ('{BLF-CRYPT}$2y$10$' + 'a' * 52 + '|', 'well-formed'),
])
def test_malformed_hashes(value, needle):
    with pytest.raises(h.HashError) as err:
        h.check_hash(value, 'accounts[0].password_hash')
    assert str(err.value).startswith('accounts[0].password_hash')
    assert needle in str(err.value)


def test_unknown_scheme_never_verifies():
    assert not h.verify_password('secret', '{PLAIN}secret')
    assert not h.verify_password('secret', 'no-prefix')


def test_run_jobs_parallel_matches_serial():
    stored = h.hash_password('p1')
    jobs = [('verify', 'p1', stored), ('verify', 'nope', stored)] * 20 + [('hash', 'x', 'SHA512-CRYPT')] * 10
    serial = h.run_jobs(jobs, workers=1)
    parallel = h.run_jobs(jobs, workers=2)
    assert serial[:40] == parallel[:40] == [True, False] * 20
    assert all(h.verify_password('x', r) for r in parallel[40:])


def test_pool_workers_die_with_the_module_process():
    """_worker_init asks the kernel to kill a worker when its parent dies, and exits at once when the parent
    is already gone."""
    import ctypes
    import signal
    from ansible_collections.dms.mailserver.plugins.module_utils._hashing import _worker_init
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            _worker_init(os.getppid())
            value = ctypes.c_int(0)
            ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
            code = 0 if value.value == signal.SIGKILL else 4
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] >> 8 == 0
    pid = os.fork()
    if pid == 0:
        try:
            _worker_init(os.getppid() + 1000000)  # not our parent: as if the module died before the worker started
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] >> 8 == 1


# Hashes of 'dms-selftest' written by Dovecot's `doveadm pw` (Debian 12's dovecot-core 2.3).
DOVEADM = {
    'SHA512-CRYPT': '{SHA512-CRYPT}$6$bn6MCOCcrXPV2cJ7$IqhyJx4RRSxScL92yOd6VWD/ekLYNylvxfbFp9TJDXlssXionhQiU6eaUUic'
                    'eRZuIQXMiHllQFYmripMzKDmG.',
    'BLF-CRYPT': '{BLF-CRYPT}$2y$05$t.IgS0QMPrSea/7kOoR8PekoVZZEWf2Vv1tBFqnr6/mg1.WAB8pIS',
    'ARGON2ID': '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$qaxoDWi2ndoY5jV1I2ZOHQ$P8qKv39+eHnJNCfd2vTcFmyJJdHQRh7Fl0'
                'ajqjJ8jbo',
}


@pytest.mark.parametrize('scheme', sorted(DOVEADM))
def test_doveadm_hashes_verify(scheme):
    assert h.verify_password('dms-selftest', DOVEADM[scheme])
    assert not h.verify_password('dms-selftesT', DOVEADM[scheme])


@pytest.mark.parametrize('ident', ['2a', '2b', '2y'])
def test_every_bcrypt_prefix_dovecot_accepts_verifies(ident):
    stored = DOVEADM['BLF-CRYPT'].replace('$2y$', '$%s$' % ident)
    assert h.verify_password('dms-selftest', stored)


@pytest.mark.parametrize('stored', [
    DOVEADM['BLF-CRYPT'].replace('$2y$', '$2x$'),       # obsolete variant: no library verifies it
    DOVEADM['BLF-CRYPT'][:-1],                          # truncated
    '{SHA512-CRYPT}$6$short$tooshort',
])
def test_hashes_nothing_can_verify_match_nothing_without_asking_the_library(stored, monkeypatch):
    monkeypatch.setattr(h, '_bcrypt', None)   # any call into the library would raise
    monkeypatch.setattr(h, '_sha512', None)
    assert not h.can_verify(stored)
    assert h.verify_password('dms-selftest', stored) is False


def test_bcrypt_72_byte_limit_counts_utf8_bytes():
    ok = 'ü' * 36                      # 72 bytes
    stored = h.hash_password(ok, 'BLF-CRYPT')
    assert h.verify_password(ok, stored)
    for too_long in ('x' * 73, 'ü' * 36 + 'x'):
        with pytest.raises(h.HashError) as err:
            h.hash_password(too_long, 'BLF-CRYPT')
        assert '73 bytes' in str(err.value) and too_long not in str(err.value)
        with pytest.raises(h.HashError):
            h.verify_password(too_long, stored)     # never "matches" on its first 72 bytes
        assert not isinstance(err.value, h.HashBackendError)


@pytest.mark.parametrize('scheme', ['SHA512-CRYPT', 'ARGON2ID'])
def test_other_schemes_take_long_passwords(scheme):
    long_pw = 'y' * 200
    stored = h.hash_password(long_pw, scheme)
    assert h.verify_password(long_pw, stored) and not h.verify_password('y' * 199, stored)


class _BrokenBcrypt:
    """What bcrypt 5.0 looked like to passlib 1.7.4: every call refuses the password."""
    @staticmethod
    def checkpw(password, hashed):
        raise ValueError('password cannot be longer than 72 bytes, truncate manually if necessary')
    hashpw = checkpw

    @staticmethod
    def gensalt(rounds=12):
        return b'$2b$%02d$' % rounds + b'a' * 22


def test_library_error_is_never_a_mismatch(monkeypatch):
    stored = DOVEADM['BLF-CRYPT']
    monkeypatch.setattr(h, '_checked', {'bcrypt'})     # as if it had passed the self-test, then broke
    monkeypatch.setattr(h, '_bcrypt', _BrokenBcrypt)
    with pytest.raises(h.HashBackendError) as err:
        h.verify_password('dms-selftest', stored)
    msg = str(err.value)
    assert 'bcrypt failed while checking a stored {BLF-CRYPT} hash' in msg
    assert 'ValueError: password cannot be longer than 72 bytes' in msg
    assert 'nothing was written' in msg and 'not a wrong password' in msg
    assert 'Python 3.' in msg and 'bcrypt ' in msg and 'pip install -U libpass bcrypt argon2-cffi' in msg
    assert 'python3-bcrypt' in msg
    assert 'dms-selftest' not in msg


def test_self_test_catches_a_broken_library_before_any_work(monkeypatch):
    monkeypatch.setattr(h, '_checked', set())
    monkeypatch.setattr(h, '_bcrypt', _BrokenBcrypt)
    with pytest.raises(h.HashBackendError) as err:
        h.require(['BLF-CRYPT'])
    assert 'bcrypt failed its self-test' in str(err.value)


def test_self_test_catches_wrong_answers(monkeypatch):
    import bcrypt

    class Liar:
        hashpw = staticmethod(bcrypt.hashpw)
        gensalt = staticmethod(bcrypt.gensalt)

        @staticmethod
        def checkpw(password, hashed):
            return False                  # a mismatch for everything: the silent-downgrade case
    monkeypatch.setattr(h, '_checked', set())
    monkeypatch.setattr(h, '_bcrypt', Liar)
    with pytest.raises(h.HashBackendError) as err:
        h.require(['BLF-CRYPT'])
    assert 'wrong answers for a hash written by doveadm pw' in str(err.value)


@pytest.mark.parametrize('lib,scheme,pip_name,deb', [
    ('passlib', 'SHA512-CRYPT', 'libpass', 'python3-passlib'),
    ('bcrypt', 'BLF-CRYPT', 'bcrypt', 'python3-bcrypt'),
    ('argon2', 'ARGON2ID', 'argon2-cffi', 'python3-argon2'),
])
def test_missing_library_names_pip_and_debian_packages(monkeypatch, lib, scheme, pip_name, deb):
    monkeypatch.setattr(h, '_checked', set())
    monkeypatch.setitem(h.IMPORT_ERRORS, lib, "Traceback ...\nModuleNotFoundError: No module named 'x'\n")
    with pytest.raises(h.HashBackendError) as err:
        h.require([scheme])
    msg = str(err.value)
    assert msg.startswith('Failed to import the required Python library')
    assert 'for {%s} hashes' % scheme in msg and 'ansible_python_interpreter' in msg
    assert 'pip install -U %s' % pip_name in msg and 'apt-get install %s' % deb in msg
    with pytest.raises(h.HashBackendError):
        h.hash_password('pw', scheme)


def test_require_ignores_schemes_it_does_not_know():
    h.require(['PLAIN', None])
