# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role run again with other inventory values: lock-out protection, check mode, drift, absent.

Runs after test_firewall.py (the tests of this file depend on their order) and leaves the targets without
the role's rules.
"""
from __future__ import annotations

import re

import pytest

from fwtest import (BACKEND, OFFICE, OUTSIDE, ROLE_VARS, TARGETS, HeldSSH, Run, accepted, endpoint, probe, sh,
                    snapshot)

WITH_POP3 = {'dms_env': dict(ROLE_VARS['dms_env'], ENABLE_POP3=1)}


def snapshots():
    return {target: snapshot(target) for target in TARGETS}


def probe_all(client, port, family=4):
    network = 'dms-fw-office' if client == OFFICE else 'dms-fw-outside'
    eps = {target: endpoint(target, network, family, port) for target in TARGETS}
    answers = probe(client, list(eps.values()))
    return {target: answers[ep] for target, ep in eps.items()}


@pytest.mark.parametrize('bad', [
    # Ansible connects from the office gateway; SSH restricted to the other range would drop it.
    {'dms_firewall_ssh_sources': ['10.198.2.0/24']},
    # Ansible connects over 22; moving the kept SSH port to 2222 would drop it.
    {'dms_firewall_ssh_port': 2222},
], ids=['ssh-sources', 'ssh-port'])
def test_run_that_would_lock_out_ansible_fails_before_changing_anything(bad):
    before = snapshots()
    run = Run(dict(WITH_POP3, **bad))    # POP3 too: a run that got further would change the rules
    assert run.rc != 0
    failures = run.failures()
    assert sorted(failures) == TARGETS
    for target, msg in failures.items():
        assert 'would lock Ansible out' in msg and 'connected to port 22/tcp from 10.198.1.1' in msg, msg
    assert snapshots() == before


def test_check_mode_predicts_the_real_run_and_established_connections_survive():
    before = snapshots()
    check = Run(WITH_POP3, check=True).ok()
    assert snapshots() == before, 'check mode changed something'
    predicted = check.changed()
    assert all(predicted[target] for target in TARGETS), predicted

    held = {target: HeldSSH(target) for target in TARGETS}
    real = Run(WITH_POP3).ok()
    assert real.changed() == predicted
    assert all(conn.still_alive() for conn in held.values()), 'an established SSH connection was cut'

    for client in (OFFICE, OUTSIDE):
        for target, result in probe_all(client, 110).items():
            assert accepted(result, target), (client, target, result)

    restored = Run().ok()
    assert all(restored.stats[target]['changed'] for target in TARGETS)
    for target, result in probe_all(OUTSIDE, 110).items():
        assert not result.startswith('accepted'), (target, result)


def test_published_port_filter_is_the_forward_chain_and_drift_is_repaired():
    published = endpoint('dms-fw-nft', 'dms-fw-outside', 4, 587)
    assert not list(probe(OUTSIDE, [published]).values())[0].startswith('accepted')
    # Without the role's forward chain the engine's DNAT lets every source through, input chain or not.
    sh('dms-fw-nft', 'nft delete chain inet dms_mailserver forward')
    assert accepted(list(probe(OUTSIDE, [published]).values())[0], BACKEND)

    run = Run().ok()
    assert run.stats['dms-fw-nft']['changed'] > 0          # the changed table is loaded again
    assert run.stats['dms-fw-ufw']['changed'] == 0         # the others were already as wanted
    assert run.stats['dms-fw-firewalld']['changed'] == 0
    assert not list(probe(OUTSIDE, [published]).values())[0].startswith('accepted')


def foreign_state():
    """The hosts' own rules (set up by prepare.yml), which the role must never touch."""
    return {
        'dms-fw-nft': re.sub(r'\[\d+:\d+\]', '', sh('dms-fw-nft', 'iptables-save | grep -v "^#"')),
        'dms-fw-ufw': '\n'.join(line for line in sh('dms-fw-ufw', 'ufw show added').splitlines()
                                if 'dms-mailserver' not in line),
        'dms-fw-firewalld': sh('dms-fw-firewalld', 'firewall-cmd --list-ports; firewall-cmd --permanent --list-ports; '
                                                   'firewall-cmd --list-rich-rules | grep -v dms-mailserver || true'),
    }


def test_absent_removes_only_the_roles_rules():
    foreign = foreign_state()
    assert '2222/tcp' in foreign['dms-fw-firewalld'] and 'port="2223"' in foreign['dms-fw-firewalld']
    before = snapshots()
    check = Run({'dms_firewall_state': 'absent'}, check=True).ok()
    assert snapshots() == before, 'check mode changed something'

    absent = Run({'dms_firewall_state': 'absent'}).ok()
    assert absent.changed() == check.changed()
    assert all(absent.stats[target]['changed'] for target in TARGETS)
    assert foreign_state() == foreign

    for target in TARGETS:   # the role's table and files are gone everywhere
        assert sh(target, 'nft list table inet dms_mailserver', check=False) == ''
        assert sh(target, 'ls /etc/dms-mailserver /etc/systemd/system/dms-mailserver-firewall.service 2>&1 || true'
                  ).count('No such file') == 2
    assert 'dms-mailserver' not in sh('dms-fw-ufw', 'ufw show added')
    assert 'Status: active' in sh('dms-fw-ufw', 'ufw status')
    # firewalld keeps only the role's SSH service (nothing else may keep the SSH port open there).
    zone = sh('dms-fw-firewalld', 'firewall-cmd --list-services; firewall-cmd --permanent --list-services; '
                                  'firewall-cmd --list-rich-rules; ls /etc/firewalld/services')
    assert re.findall(r'dms-mailserver[-\w]*', zone) == ['dms-mailserver-ssh-22'] * 3, zone

    for client in (OFFICE, OUTSIDE):
        for target, result in probe_all(client, 22).items():
            assert result.startswith('accepted SSH-2.0-'), (client, target, result)
    # The published port is no longer filtered by source (the engine's own rules are all that is left).
    assert accepted(list(probe(OUTSIDE, [endpoint('dms-fw-nft', 'dms-fw-outside', 4, 587)]).values())[0], BACKEND)

    again = Run({'dms_firewall_state': 'absent'}).ok()
    assert all(again.stats[target]['changed'] == 0 for target in TARGETS), again.changed()
