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
