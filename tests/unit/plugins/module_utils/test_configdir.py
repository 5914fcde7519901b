# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils._configdir import (
    LOCK_NAME, ConfigDir, ConfigDirError, Masker,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_creates_dir_and_writes_with_spec_mode(tmp_path):
    cfg_path = tmp_path / 'cfg'
    with ConfigDir(str(cfg_path)) as cfg:
        cfg.table('accounts').set('a@x.com', 'a@x.com|{SHA512-CRYPT}$6$a$b')
        cfg.table('quotas').set('a@x.com', 'a@x.com:1G')
        changed, backups = cfg.commit()
    assert changed == ['dovecot-quotas.cf', 'postfix-accounts.cf']
    assert backups == []
    assert (cfg_path / 'postfix-accounts.cf').read_text() == 'a@x.com|{SHA512-CRYPT}$6$a$b\n'
    assert _mode(cfg_path / 'postfix-accounts.cf') == 0o600
    assert _mode(cfg_path / 'dovecot-quotas.cf') == 0o644
    assert not [p for p in os.listdir(cfg_path) if p.endswith('.dms-tmp')]


def test_check_mode_writes_nothing_not_even_the_dir(tmp_path):
    cfg_path = tmp_path / 'cfg'
    with ConfigDir(str(cfg_path), check_mode=True) as cfg:
        cfg.table('accounts').set('a@x.com', 'a@x.com|h')
        changed, dummy = cfg.commit()
    assert changed == ['postfix-accounts.cf']
    assert not cfg_path.exists()


def test_existing_mode_and_content_kept(tmp_path):
    target = tmp_path / 'postfix-virtual.cf'
    target.write_text('# mine\r\nx@d.com y@d.com\r\n')
    os.chmod(target, 0o640)
    with ConfigDir(str(tmp_path), backup=True) as cfg:
        cfg.table('virtual').set('z@d.com', 'z@d.com w@d.com')
        changed, backups = cfg.commit()
    assert target.read_bytes() == b'# mine\nx@d.com y@d.com\nz@d.com w@d.com\n'
    assert _mode(target) == 0o640
    assert len(backups) == 1 and open(backups[0], 'rb').read() == b'# mine\r\nx@d.com y@d.com\r\n'


def test_forced_mode_applies_to_existing_file(tmp_path):
    target = tmp_path / 'postfix-sasl-password.cf'
    target.write_text('@d.com u:p\n')
    os.chmod(target, 0o644)
    with ConfigDir(str(tmp_path)) as cfg:
        cfg.table('sasl').set('@e.com', '@e.com v:q')
        cfg.commit()
    assert _mode(target) == 0o600


def test_stale_temp_files_are_removed(tmp_path):
    stale = tmp_path / '.postfix-accounts.cf.abc123.dms-tmp'
    stale.write_text('partial')
    with ConfigDir(str(tmp_path)) as cfg:
        cfg.commit()
    assert not stale.exists()


def test_symlink_outside_config_dir_is_refused(tmp_path):
    outside = tmp_path / 'outside'
    outside.write_text('a@x.com|h\n')
    cfg_path = tmp_path / 'cfg'
    cfg_path.mkdir()
    os.symlink(str(outside), str(cfg_path / 'postfix-accounts.cf'))
    with pytest.raises(ConfigDirError) as err:
        with ConfigDir(str(cfg_path)) as cfg:
            cfg.table('accounts')
    assert 'outside config_dir' in str(err.value)
    assert outside.read_text() == 'a@x.com|h\n'


def test_lock_timeout_names_the_option(tmp_path):
    holder = ConfigDir(str(tmp_path))
    holder.lock()
    try:
        start = time.monotonic()
        with pytest.raises(ConfigDirError) as err:
            ConfigDir(str(tmp_path), lock_timeout=1).lock()
        assert time.monotonic() - start >= 0.9
        assert str(err.value).startswith('lock_timeout:')
    finally:
        holder.unlock()


def test_lock_serialises_read_modify_write(tmp_path):
    """Without the lock these concurrent appends would lose updates."""
    def add(i):
        with ConfigDir(str(tmp_path), lock_timeout=60) as cfg:
            table = cfg.table('accounts')
            time.sleep(0.01)  # widen the read-modify-write window
            table.set('u%d@x.com' % i, 'u%d@x.com|h' % i)
            cfg.commit()
    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / 'postfix-accounts.cf').read_text().splitlines()
    assert sorted(lines) == sorted('u%d@x.com|h' % i for i in range(12))
    assert (tmp_path / LOCK_NAME).exists()


def test_failed_write_leaves_every_file_unchanged(tmp_path, monkeypatch):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|old\n')
    (tmp_path / 'dovecot-quotas.cf').write_text('a@x.com:1G\n')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, 'No space left on device')
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(ConfigDirError) as err:
        with ConfigDir(str(tmp_path)) as cfg:
            cfg.table('accounts').set('a@x.com', 'a@x.com|new')
            cfg.table('quotas').set('a@x.com', 'a@x.com:2G')
            cfg.commit()
    assert 'No space left' in str(err.value)
    monkeypatch.setattr(os, 'fsync', real_fsync)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != LOCK_NAME}
    assert after == before


def test_masker_hides_hashes_but_shows_change():
    masker = Masker()
    before = masker.hash_text('# x\na@x.com|{SHA512-CRYPT}$6$salt$AAAA|extra\nb@x.com|{BLF-CRYPT}$2y$10$zz\n')
    after = masker.hash_text('# x\na@x.com|{SHA512-CRYPT}$6$salt$BBBB|extra\nb@x.com|{BLF-CRYPT}$2y$10$zz\n')
    assert '$6$' not in before + after and '$2y$' not in before + after
    assert before.splitlines()[2] == after.splitlines()[2]   # unchanged hash, same placeholder
    assert before.splitlines()[1] != after.splitlines()[1]   # changed hash, other placeholder
    assert before.splitlines()[1].endswith('|extra')
    assert '$6$' not in masker.hash_text('# old: {SHA512-CRYPT}$6$abc$def\n')


def test_masker_sasl():
    masker = Masker()
    text = masker.sasl_text('# c\n@d.com user:s3cr:et\n[relay.example.com]:587 u2:pw2\n')
    assert 's3cr' not in text and 'pw2' not in text
    assert '@d.com user:<password #1 masked>' in text


def test_stale_temp_files_are_removed_in_subdirectories_too(tmp_path):
    """Any run's lock removes what a killed run left where modules write (three levels down), not deeper,
    and never follows a symlinked directory."""
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / '.x.abc.dms-tmp').write_text('not ours to touch')
    cfg_path = tmp_path / 'cfg'
    stale = [cfg_path / '.postfix-accounts.cf.a1.dms-tmp', cfg_path / 'opendkim' / '.KeyTable.b2.dms-tmp',
             cfg_path / 'opendkim' / 'keys' / 'example.com' / '.mail.private.c3.dms-tmp',
             cfg_path / 'rspamd' / 'dkim' / '.rsa-2048-mail-example.com.private.txt.d4.dms-tmp']
    deeper = cfg_path / 'a' / 'b' / 'c' / 'd' / '.deep.e5.dms-tmp'
    for path in stale + [deeper]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('partial')
    os.symlink(str(outside), str(cfg_path / 'opendkim' / 'keys' / 'linked'))
    with ConfigDir(str(cfg_path)):
        pass
    assert [p for p in stale if p.exists()] == []
    assert deeper.exists()
    assert (outside / '.x.abc.dms-tmp').exists()


def test_check_mode_removes_no_temp_file(tmp_path):
    stale = tmp_path / 'opendkim' / '.KeyTable.b2.dms-tmp'
    stale.parent.mkdir()
    stale.write_text('partial')
    (tmp_path / LOCK_NAME).write_text('')
    with ConfigDir(str(tmp_path), check_mode=True):
        pass
    assert stale.exists()


def test_forked_child_does_not_keep_the_lock(tmp_path):
    """A process forked under the lock (a hashing worker) lets go of it: when the parent's descriptor closes
    without unlocking (the parent was killed), the lock is free although the child still runs."""
    holder = ConfigDir(str(tmp_path))
    holder.lock()
    ready, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: say it runs (the fork hooks have run by then), outlive the parent's lock
        os.write(ready_w, b'r')
        time.sleep(5)
        os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready, 1) == b'r'
        os.close(ready)
        os.close(holder._lock_fd)  # what the kernel does when the parent dies
        holder._lock_fd = None
        with ConfigDir(str(tmp_path), lock_timeout=0):
            pass
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_backup_that_fails_leaves_no_partial_copy(tmp_path, monkeypatch):
    import shutil
    (tmp_path / 'postfix-virtual.cf').write_text('x@d.com y@d.com\n' * 100)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def half_copy(source, target, *args):
        target.write(source.read(10))
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(shutil, 'copyfileobj', half_copy)
    with pytest.raises(ConfigDirError) as err:
        with ConfigDir(str(tmp_path), backup=True) as cfg:
            cfg.table('virtual').set('z@d.com', 'z@d.com w@d.com')
            cfg.commit()
    assert 'No space left on device' in str(err.value) and 'unchanged' in str(err.value)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != LOCK_NAME}
    assert after == before


def test_backup_keeps_mode_and_content(tmp_path):
    target = tmp_path / 'postfix-sasl-password.cf'
    target.write_text('@d.com u:p\r\n')
    os.chmod(target, 0o600)
    with ConfigDir(str(tmp_path), backup=True) as cfg:
        cfg.table('sasl').set('@e.com', '@e.com v:q')
        dummy, backups = cfg.commit()
    [backup] = backups
    assert os.path.basename(backup).startswith('postfix-sasl-password.cf.%d.' % os.getpid())
    assert backup.endswith('~')
    assert open(backup, 'rb').read() == b'@d.com u:p\r\n'
    assert _mode(backup) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.endswith('.dms-tmp')]


def test_failed_commit_removes_the_directories_it_created(tmp_path, monkeypatch):
    (tmp_path / 'keep.txt').write_text('x')
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(ConfigDirError):
        with ConfigDir(str(tmp_path)) as cfg:
            cfg.stage('rspamd/dkim/key.private.txt', 'secret\n', mode=0o600)
            cfg.commit()
    monkeypatch.setattr(os, 'fsync', real_fsync)
    assert sorted(os.listdir(tmp_path)) == sorted([LOCK_NAME, 'keep.txt'])
