# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Full disk: the config dir on a tiny tmpfs that fills up in the middle of a write.

Every module is run against a config dir whose file system has less room than the new files need: the write of a
temp file starts and fails part-way with ENOSPC.  Each run must fail with a clear message, leave every file
byte-identical (the tree, directories included, is compared) and leave no temp file behind (the free space is the
same before and after).  Then the space comes back and the same runs succeed.
"""
from __future__ import annotations

import os
import random
import subprocess

import pytest
from dmstest import run_play
from reltest import check_config_dir, note, task, temp_files, tree, write_files

KB = 1024


@pytest.fixture
def tmpfs(tmp_path):
    """mount(tmpfs, options) -> mount point; everything is unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip('the full-disk tests mount a tmpfs, which needs root: run the suite as root (make test does)')
    mounted = []

    def mount(name, options):
        point = tmp_path / name
        point.mkdir()
        proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(point)], capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, 'mount -t tmpfs failed as root: %s' % proc.stderr
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(['umount', str(point)], check=False)


def free_bytes(path):
    st = os.statvfs(str(path))
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Fill the file system of ``path`` with one file, leaving ``leave`` bytes free; returns the file."""
    filler = path / 'filler'
    fd = os.open(str(filler), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (64 * KB, 512):
            while True:
                try:
                    os.write(fd, b'\0' * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    os.truncate(str(filler), max(0, os.path.getsize(filler) - leave))
    return filler


def _fake_hash(rng):
    chars = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
    return '{SHA512-CRYPT}$6$%s$%s' % (''.join(rng.choice(chars) for dummy in range(16)),
                                       ''.join(rng.choice(chars) for dummy in range(86)))


def _seed(cfg, rng):
    """Tables of 60-200 KB: more than the free space left, so each rewrite fails part-way."""
    n = 1500
    write_files(cfg, {
        'postfix-accounts.cf': '# accounts\n' + ''.join('user%d@example.com|%s\n' % (i, _fake_hash(rng))
                                                        for i in range(n)),
        'dovecot-quotas.cf': ''.join('user%d@example.com:1G\n' % i for i in range(0, n, 10)),
        'postfix-virtual.cf': ''.join('alias%d@example.com user%d@example.com\n' % (i, i) for i in range(n)),
        'postfix-relaymap.cf': ''.join('@d%d.example.net [relay.example.net]:587\n' % i for i in range(n)),
        'postfix-sasl-password.cf': ''.join('@d%d.example.net user%d:Full-disk-pw-%d\n' % (i, i, i)
                                            for i in range(n)),
        'opendkim/KeyTable': ''.join(
            'mail._domainkey.k%d.example.org k%d.example.org:mail:/etc/opendkim/keys/k%d.example.org/mail.private\n'
            % (i, i, i) for i in range(n)),
        'opendkim/SigningTable': ''.join('*@k%d.example.org mail._domainkey.k%d.example.org\n' % (i, i)
                                         for i in range(n)),
        'opendkim/TrustedHosts': '127.0.0.1\nlocalhost\n',
    })
    os.chmod(cfg / 'postfix-accounts.cf', 0o600)
    os.chmod(cfg / 'postfix-sasl-password.cf', 0o600)


def _phases(cfg, fresh):
    """(free bytes to leave, tasks that must fail for want of them)."""
    c = str(cfg)
    return [
        # Less room than any rewritten table: the temp file's write fails part-way.  dms_account writes
        # dovecot-quotas.cf first (it fits) and postfix-accounts.cf then fills the disk.
        (48 * KB, [
            task('dms_account', 'account', config_dir=c, address='new@example.com', password='Disk-pw-1',
                 quota='2G'),
            task('dms_alias', 'alias', config_dir=c, alias='new-alias@example.com', recipients=['user1@example.com']),
            task('dms_relay', 'relay', config_dir=c, domain='new.example.net', host='smtp.example.net', port=587,
                 username='nu', password='Disk-relay-pw'),
            task('dms_dkim', 'dkim', config_dir=c, domain='new.example.org', key_size=1024),
        ]),
        # Room for the temp file, not for the backup copy that backup=true makes before the rename.
        (100 * KB, [
            task('dms_relay', 'relay with backup', config_dir=c, domain='d3.example.net', host='other.example.net',
                 backup=True),
            task('dms_alias', 'alias with backup', config_dir=c, alias='alias5@example.com',
                 recipients=['user6@example.com'], backup=True),
        ]),
        # No room at all, in a config dir where the run must first create directories (rspamd/dkim).
        (0, [
            task('dms_dkim', 'rspamd key in a new directory', config_dir=str(fresh), domain='new.example.org',
                 backend='rspamd', key_type='ed25519'),
        ]),
    ]


def test_full_disk_fails_cleanly_and_changes_nothing(tmpfs, tmp_path):
    mnt = tmpfs('tiny', 'size=2m,mode=0755')
    cfg, fresh = mnt / 'config', mnt / 'fresh'
    _seed(cfg, random.Random(3))
    fresh.mkdir()
    (fresh / 'postfix-accounts.cf').write_text('# nothing else here yet\n')
    phases = _phases(cfg, fresh)
    runs = 0
    for leave, tasks in phases:
        filler = fill(mnt, leave)
        before = (tree(cfg), tree(fresh), free_bytes(mnt))
        play = run_play(tmp_path, [dict(item, ignore_errors=True) for item in tasks])
        for item, result in zip(tasks, play.tasks):
            name = item['name']
            assert result.get('failed') is True, '%s did not fail: %r' % (name, result)
            msg = result.get('msg', '')
            assert 'No space left on device' in msg and 'unchanged' in msg, '%s: unclear error %r' % (name, msg)
            assert 'Traceback' not in msg and 'Module failed' not in msg, (name, msg)
            runs += 1
        after = (tree(cfg), tree(fresh), free_bytes(mnt))
        for where, old, new in (('config', before[0], after[0]), ('fresh', before[1], after[1])):
            assert new == old, '%s changed on a full disk (%d KiB free): %r' % (
                where, leave // KB, sorted(set(new.items()) ^ set(old.items())))
        assert temp_files(mnt) == []
        assert after[2] == before[2], 'space leaked: %d bytes' % (before[2] - after[2])
        filler.unlink()

    # With room again, the very same runs succeed, and the result is well-formed.
    tasks = [item for dummy, phase in phases for item in phase]
    play = run_play(tmp_path, tasks)
    assert not play.failed, play.stdout + play.stderr
    assert all(result['changed'] for result in play.tasks)
    check_config_dir(cfg, {'new@example.com': 'Disk-pw-1'})
    assert temp_files(mnt) == []
    note('full disk: %d module runs on a full tmpfs (48 KiB, 100 KiB or nothing left): each failed naming ENOSPC, '
         'trees byte-identical (directories included), no temp file, no space leaked; all succeeded with room'
         % runs)


def test_no_inode_left_fails_cleanly(tmpfs, tmp_path):
    """A file system out of inodes: no temp file (or lock file) can be created at all."""
    mnt = tmpfs('noinodes', 'size=1m,nr_inodes=8,mode=0755')
    cfg = mnt / 'config'
    cfg.mkdir()
    (cfg / 'postfix-accounts.cf').write_text('# accounts\n')
    (cfg / 'postfix-relaymap.cf').write_text('# relays\n')
    inodes = []
    try:
        for i in range(100):
            path = mnt / ('inode%d' % i)
            path.write_bytes(b'')
            inodes.append(path)
    except OSError:
        pass
    before = tree(cfg)
    play = run_play(tmp_path, [
        dict(task('dms_account', config_dir=str(cfg), address='a@example.com', password='Inode-pw'),
             ignore_errors=True),
    ])
    result = play.tasks[0]
    assert result.get('failed') is True, result
    assert 'No space left on device' in result['msg'] and 'lock file' in result['msg'], result['msg']
    assert tree(cfg) == before
    # With the lock file there (one inode freed for it, then none), the temp file cannot be created.
    inodes.pop().unlink()
    (cfg / '.dms-mailserver.lock').write_bytes(b'')
    play = run_play(tmp_path, [
        dict(task('dms_relay', config_dir=str(cfg), domain='example.com', host='smtp.example.net'),
             ignore_errors=True),
    ])
    result = play.tasks[0]
    assert result.get('failed') is True, result
    assert 'No space left on device' in result['msg'] and 'unchanged' in result['msg'], result['msg']
    assert tree(cfg) == before
    assert temp_files(cfg) == []
