# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the playbook tests: an inventory of config-only mail hosts in a temp dir, and playbook runs."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dmstest import ansible_env

ACCOUNTS = [
    {'address': 'alice@example.com', 'password': 'Alice-Pb-Pw-1', 'quota': '1G'},
    {'address': 'bob@example.com', 'password': 'Bob-Pb-Pw-2', 'restrict': ['send']},
    {'address': 'carol@example.org', 'password': 'Carol-Pb-Pw-3'},
]
ALIASES = [
    {'alias': 'info@example.com', 'recipients': ['alice@example.com', 'bob@example.com']},
    {'alias': 'postmaster@example.org', 'recipients': ['carol@example.org']},
    {'alias': '@example.org', 'recipients': ['carol@example.org']},
]
RELAYS = [{'domain': 'example.org', 'host': 'smtp.relay.test', 'port': 587, 'username': 'relay-user',
           'password': 'Relay-Pb-Pw-9'}]
MASTERS = [{'name': 'admin', 'password': 'Admin-Master-Pb-Pw-5'}]
SECRETS = [a['password'] for a in ACCOUNTS] + [r['password'] for r in RELAYS] + [m['password'] for m in MASTERS]


def group_vars(**overrides):
    """The group's state: config-only hosts (no container, no firewall) with shared DKIM keys."""
    data = {
        'ansible_connection': 'local',
        'ansible_python_interpreter': sys.executable,
        'dms_manage_container': False,
        'dms_firewall_enabled': False,
        'dms_accounts': copy.deepcopy(ACCOUNTS),
        'dms_accounts_exclusive': False,
        'dms_dovecot_masters': copy.deepcopy(MASTERS),
        'dms_dovecot_masters_exclusive': True,
        'dms_aliases': copy.deepcopy(ALIASES),
        'dms_aliases_exclusive': False,
        'dms_relays': copy.deepcopy(RELAYS),
        'dms_dkim': [{'domain': 'example.com'}, {'domain': 'example.org'}],
        'dms_dkim_shared': True,
    }
    data.update(overrides)
    return data


class Group:
    """An inventory file with hosts mx1 and mx2 (group mailservers), each with a base dir under root."""

    def __init__(self, root, hosts=('mx1', 'mx2'), host_vars=None, **overrides):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hosts = list(hosts)
        self.vars = group_vars(**overrides)
        self.host_vars = dict((h, {'dms_base_dir': str(self.root / h), 'dms_hostname': '%s.example.com' % h,
                                   'dms_dns_mx_priority': 10 * (i + 1)})
                              for i, h in enumerate(self.hosts))
        for host, values in (host_vars or {}).items():
            self.host_vars[host].update(values)
        self.write()

    def write(self):
        inventory = {'all': {'children': {'mailservers': {'vars': self.vars, 'hosts': self.host_vars}}}}
        self.inventory = self.root / 'inventory.yml'
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))

    def config(self, host):
        return self.root / host / 'docker-data' / 'dms' / 'config'

    def copy_to(self, root):
        """A new group in root with this group's files and inventory (base dirs moved along)."""
        for host in self.hosts:
            if (self.root / host).exists():
                shutil.copytree(self.root / host, Path(root) / host, symlinks=True)
        other = Group.__new__(Group)
        other.root = Path(root)
        other.hosts = list(self.hosts)
        other.vars = copy.deepcopy(self.vars)
        other.host_vars = copy.deepcopy(self.host_vars)
        for host in other.hosts:
            other.host_vars[host]['dms_base_dir'] = str(other.root / host)
        other.write()
        return other


class PlaybookRun:
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data

    @property
    def stats(self):
        return self.data['stats']

    def changed(self, host):
        return self.stats[host]['changed']

    def task(self, name, host):
        """The result of the last task whose name contains name, for host."""
        found = None
        for play in self.data['plays']:
            for task in play['tasks']:
                if name in task['task']['name'] and host in task['hosts']:
                    found = task['hosts'][host]
        if found is None:
            raise AssertionError('no task %r for %s' % (name, host))
        return found

    def failure_messages(self):
        out = []
        for play in self.data['plays']:
            for task in play['tasks']:
                for result in task['hosts'].values():
                    if result.get('failed'):
                        msg = result.get('msg')
                        out.extend(msg if isinstance(msg, list) else [str(msg)])
        return out


def run_playbook(group, playbook, extra_vars=None, check=False, diff=False, verbosity=0, json_output=True,
                 limit=None):
    """ansible-playbook -i <group's inventory> dms.mailserver.<playbook> (or a path)."""
    target = playbook if os.sep in str(playbook) else 'dms.mailserver.%s' % playbook
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(group.inventory),
           str(target)]
    if extra_vars:
        cmd += ['-e', json.dumps(extra_vars)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    if verbosity:
        cmd.append('-' + 'v' * verbosity)
    if limit:
        cmd += ['--limit', limit]
    env = {'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json'} if json_output else {}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(env), timeout=900, check=False,
                          cwd=str(group.root))
    data = None
    if json_output:
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError('ansible-playbook printed no JSON:\n%s\n%s' % (proc.stdout, proc.stderr))
    return PlaybookRun(proc, data)


def files(directory):
    """{relative path: bytes} of every file under directory (the lock file excepted)."""
    base = Path(directory)
    if not base.exists():
        return {}
    return dict((str(p.relative_to(base)), p.read_bytes()) for p in sorted(base.rglob('*'))
                if p.is_file() and p.name != '.dms-mailserver.lock')


def lines(path):
    return Path(path).read_text().splitlines()
