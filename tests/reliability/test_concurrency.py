# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrency: 16 ansible-playbook runs at once, mixing dms_account, dms_alias and dms_relay on one config dir."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dmstest import ansible_env
from reltest import check_config_dir, note, task, temp_files, write_files

RUNS = 16
SEED = {
    # Comments, a blank line and CRLF endings that every run must keep.
    'postfix-accounts.cf': '# accounts kept by hand\r\n\r\n',
    'postfix-virtual.cf': '# aliases\nroot postmaster@example.com\n',
    'postfix-relaymap.cf': '# relays\n@keep.example.org [smtp.keep.example.org]:25\n',
}


def _play(cfg, i):
    """Run i: its own account and relay, and an append to the one alias every run shares, in a rotated order."""
    account = task('dms_account', config_dir=str(cfg), address='user%d@example.com' % i,
                   password='Conc-pw-%d' % i, quota='%dM' % (i + 1),
                   restrict=['send'] if i % 4 == 0 else [])
    shared = task('dms_alias', config_dir=str(cfg), alias='team@example.com', append=True,
                  recipients=['user%d@example.com' % i])
    relay = task('dms_relay', config_dir=str(cfg), domain='d%d.example.net' % i, host='relay%d.example.net' % i,
                 port=587, username='u%d' % i, password='Relay-pw-%d' % i)
    tasks = [account, relay, shared]
    shift = i % len(tasks)
    return [{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks[shift:] + tasks[:shift]}]


def test_sixteen_parallel_playbooks_lose_no_update(tmp_path):
    cfg = tmp_path / 'config'
    write_files(cfg, SEED)
    procs = []
    start = time.monotonic()
    for i in range(RUNS):
        playbook = tmp_path / ('run%d.yml' % i)
        playbook.write_text(yaml.safe_dump(_play(cfg, i), sort_keys=False))
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
               '-e', 'ansible_python_interpreter=%s' % sys.executable, str(playbook)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=ansible_env()))
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    elapsed = time.monotonic() - start
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, 'run %d failed:\n%s' % (i, outputs[i])
        assert 'changed=3' in outputs[i], 'run %d did not change all three things:\n%s' % (i, outputs[i])

    passwords = dict(('user%d@example.com' % i, 'Conc-pw-%d' % i) for i in range(RUNS))
    tables = check_config_dir(cfg, passwords)

    # No lost update: everything each run added is there.
    assert set(tables['accounts']) == set(passwords)
    assert tables['quotas'] == dict(('user%d@example.com' % i, '%dM' % (i + 1)) for i in range(RUNS))
    assert set(tables['send_access']) == set('user%d@example.com' % i for i in range(0, RUNS, 4))
    for i in range(RUNS):
        assert tables['relaymap']['@d%d.example.net' % i] == '[relay%d.example.net]:587' % i
        assert tables['sasl']['@d%d.example.net' % i] == 'u%d:Relay-pw-%d' % (i, i)
    team = tables['virtual']['team@example.com'].split(',')
    assert sorted(team) == sorted('user%d@example.com' % i for i in range(RUNS)), team
    assert len(team) == RUNS

    # What was there before is still there, as it was.
    accounts = (cfg / 'postfix-accounts.cf').read_bytes().decode()
    assert accounts.startswith('# accounts kept by hand\n\n')
    assert (cfg / 'postfix-virtual.cf').read_text().startswith('# aliases\nroot postmaster@example.com\n')
    assert tables['relaymap']['@keep.example.org'] == '[smtp.keep.example.org]:25'

    # No stray temp files; the lock file (docs/reliability.md) is the only extra file, empty and private.
    assert temp_files(cfg) == []
    lock = cfg / '.dms-mailserver.lock'
    assert lock.is_file() and lock.stat().st_size == 0
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    expected = set(SEED) | {'dovecot-quotas.cf', 'postfix-send-access.cf', 'postfix-sasl-password.cf',
                            '.dms-mailserver.lock'}
    assert set(os.listdir(cfg)) == expected
    assert stat.S_IMODE(os.stat(cfg / 'postfix-sasl-password.cf').st_mode) == 0o600
    note('concurrency: %d parallel ansible-playbook runs (%d module runs) in %.1f s, every update present'
         % (RUNS, RUNS * 3, elapsed))


def test_lock_file_is_documented():
    doc = Path(__file__).resolve().parents[2] / 'docs' / 'reliability.md'
    text = doc.read_text()
    assert '.dms-mailserver.lock' in text
    assert 'flock' in text
