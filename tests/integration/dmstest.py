# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for integration tests: run real ansible-playbook against a config dir, and Debian's tools."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

COLLECTION_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_PATH = str(COLLECTION_ROOT.parents[2])


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_PATH,
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
    })
    env.update(extra or {})
    return env


class PlayResult:
    def __init__(self, proc, tasks):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.tasks = tasks  # list of per-task result dicts for localhost

    @property
    def result(self):
        """The result of the last task."""
        return self.tasks[-1]

    @property
    def failed(self):
        return self.rc != 0


def run_play(tmp_path, tasks, check=False, diff=False, verbosity=0, extra_args=(), env=None,
             module_defaults=None, json_output=True, name='play'):
    """Run tasks in a play on localhost with the venv's Python. Returns a PlayResult."""
    play = [{
        'hosts': 'localhost',
        'gather_facts': False,
        'tasks': tasks,
    }]
    if module_defaults:
        play[0]['module_defaults'] = module_defaults
    playbook = Path(tmp_path) / ('%s.yml' % name)
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
           '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % sys.executable,
           str(playbook)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    if verbosity:
        cmd.append('-' + 'v' * verbosity)
    cmd.extend(extra_args)
    extra_env = {}
    if json_output:
        extra_env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    extra_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(extra_env), timeout=900,
                          check=False)
    tasks = []
    if json_output:
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError('ansible-playbook printed no JSON:\n%s\n%s' % (proc.stdout, proc.stderr))
        for play_data in data['plays']:
            for task in play_data['tasks']:
                tasks.append(task['hosts'].get('localhost', {}))
    return PlayResult(proc, tasks)


def snapshot(directory):
    """{relative path: sha256} of every file under directory (the lock file excepted)."""
    out = {}
    base = Path(directory)
    if not base.exists():
        return out
    for path in sorted(base.rglob('*')):
        if path.is_file() and path.name != '.dms-mailserver.lock':
            out[str(path.relative_to(base))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def doveadm_verify(hashed, password):
    """Debian's doveadm pw -t: does the hash verify the password? (test passwords only)"""
    proc = subprocess.run(['doveadm', 'pw', '-t', hashed, '-p', password], capture_output=True, text=True,
                          check=False)
    return proc.returncode == 0


def doveadm_hash(password, scheme='SHA512-CRYPT'):
    proc = subprocess.run(['doveadm', 'pw', '-s', scheme, '-p', password], capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def postmap_query(key, table):
    """postmap -q KEY TABLE (e.g. texthash:/path); None when not found."""
    proc = subprocess.run(['postmap', '-q', key, table], capture_output=True, text=True, check=False)
    if proc.returncode == 1:
        return None
    if proc.returncode != 0:
        raise AssertionError('postmap -q %s %s failed: %s' % (key, table, proc.stderr))
    return proc.stdout.rstrip('\n')
