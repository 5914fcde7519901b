# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the firewall scenario's verifier.

Every connection goes from a container or the controller to an address on one of the scenario's own Docker
networks (vars/topology.yml); the scenario's containers are reached with `docker exec`.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

SCENARIO = Path(__file__).resolve().parents[1]
TOPOLOGY = yaml.safe_load((SCENARIO / 'vars' / 'topology.yml').read_text())
ROLE_VARS = yaml.safe_load((SCENARIO / 'vars' / 'role.yml').read_text())
TARGETS = sorted(TOPOLOGY['dms_fw_targets'])
OFFICE = 'dms-fw-client-office'
OUTSIDE = 'dms-fw-client-outside'
CLIENT_NETWORK = {OFFICE: 'dms-fw-office', OUTSIDE: 'dms-fw-outside'}
BACKEND = TOPOLOGY['dms_fw_backend']['name']


def address(container, network, family=4):
    """The container's address on one of the scenario's networks."""
    spec = dict(TOPOLOGY['dms_fw_targets'], **TOPOLOGY['dms_fw_clients'])[container]
    net = [n for n in spec['networks'] if n['name'] == network][0]
    return net['ipv4_address'] if family == 4 else net['ipv6_address']


def endpoint(container, network, family, port):
    addr = address(container, network, family)
    return '%s:%d' % (addr if family == 4 else '[%s]' % addr, port)


def docker_exec(container, *argv, check=True):
    proc = subprocess.run(['docker', 'exec', container] + list(argv), capture_output=True, text=True,
                          check=False, timeout=120)
    if check:
        assert proc.returncode == 0, '%s: %s failed: %s%s' % (container, argv, proc.stdout, proc.stderr)
    return proc


def sh(container, script, check=True):
    return docker_exec(container, 'bash', '-c', script, check=check).stdout


def probe(client, endpoints, timeout=3.0):
    """Connect from a client container to every endpoint at once: {endpoint: 'accepted <banner>' | ...}."""
    out = docker_exec(client, 'dms-fw-probe', '--timeout', str(timeout), *endpoints).stdout
    return json.loads(out)


def accepted(result, banner_host=None):
    if not result.startswith('accepted '):
        return False
    return banner_host is None or result.split()[2:3] == [banner_host]


def snapshot(target):
    """Everything the role may change on a target: the kernel's ruleset (stateless) and the config files."""
    return {
        'ruleset': sh(target, 'nft --stateless list ruleset'),
        'files': sh(target, 'find /etc/dms-mailserver /etc/ufw /etc/firewalld /etc/systemd/system -type f '
                            '-exec sha256sum {} + 2>/dev/null | sort || true'),
    }


class Run:
    """One ansible-playbook run of converge.yml with the JSON callback."""

    def __init__(self, extra_vars=None, check=False):
        env = dict(os.environ)
        env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
               '-i', env['MOLECULE_INVENTORY_FILE'], str(SCENARIO / 'converge.yml')]
        if extra_vars:
            cmd += ['-e', json.dumps(extra_vars)]
        if check:
            cmd += ['--check']
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index('{'):])
        except ValueError:
            raise AssertionError('no JSON from ansible-playbook:\n' + self.output[-6000:])
        self.stats = self.data['stats']

    def ok(self):
        assert self.rc == 0, self.failures() or self.output[-6000:]
        return self

    def tasks(self):
        for play in self.data['plays']:
            for task in play['tasks']:
                yield task['task']['name'], task['hosts']

    def failures(self):
        return {host: result.get('msg') for name, hosts in self.tasks() for host, result in hosts.items()
                if result.get('failed') and not result.get('ignore_errors')}

    def changed(self):
        """{host: {(task name, item label or None)}} of everything the run changed (or would change)."""
        out = {host: set() for host in self.stats}
        for name, hosts in self.tasks():
            for host, result in hosts.items():
                if 'results' in result:
                    for item in result['results']:
                        if item.get('changed'):
                            label = item.get('_ansible_item_label', item.get('item'))
                            out[host].add((name, json.dumps(label, sort_keys=True)))
                elif result.get('changed'):
                    out[host].add((name, None))
        return out


class HeldSSH:
    """A TCP connection to a target's SSH server, opened before a run and used after it."""

    def __init__(self, target):
        self.sock = socket.create_connection((address(target, 'dms-fw-office'), 22), timeout=10)
        self.banner = self.sock.recv(256)

    def still_alive(self):
        """The server still answers on the connection: our identification gets its key exchange offer."""
        try:
            self.sock.sendall(b'SSH-2.0-dms-fw-held\r\n')
            data = self.sock.recv(4096)
        except OSError:
            return False
        finally:
            self.sock.close()
        return self.banner.startswith(b'SSH-2.0-') and len(data) > 0
