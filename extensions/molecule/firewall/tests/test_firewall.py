# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The converged firewalls, probed with real TCP connections from two client containers on two networks.

vars/role.yml: mail ports from dms_env (25, 143, 465, 587, 993, and 4190 for ManageSieve; POP3 off), extra port
8025, submission and IMAP (143, 993) only from the office range, 8025 only from the other range. Every target
listens on all probed ports, so a port that does not accept is closed by the firewall.
"""
from __future__ import annotations

import pytest

from fwtest import (BACKEND, CLIENT_NETWORK, OFFICE, OUTSIDE, TARGETS, accepted, endpoint, probe, sh)

PROBED = [22, 25, 110, 143, 465, 587, 993, 995, 4190, 8025]
OPEN = {
    OFFICE: {22, 25, 143, 465, 587, 993, 4190},
    OUTSIDE: {22, 25, 465, 4190, 8025},
}
FAMILIES = [4, 6]


@pytest.fixture(scope='module')
def matrix():
    """Every client to every target, port and address family, all at once per client."""
    results = {}
    for client, network in CLIENT_NETWORK.items():
        endpoints = {(target, family, port): endpoint(target, network, family, port)
                     for target in TARGETS for family in FAMILIES for port in PROBED}
        answers = probe(client, sorted(endpoints.values()))
        for key, ep in endpoints.items():
            results[(client,) + key] = answers[ep]
    return results


def expected_banner(target, family, port):
    # dms-fw-nft publishes 587 (IPv4) from the "container" behind it, like a Docker host.
    if target == 'dms-fw-nft' and family == 4 and port == 587:
        return BACKEND
    return target


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('client', [OFFICE, OUTSIDE])
@pytest.mark.parametrize('target', TARGETS)
def test_exactly_the_allowed_ports_accept(matrix, target, client, family):
    wrong = {}
    for port in PROBED:
        result = matrix[(client, target, family, port)]
        if port == 22:
            ok = result.startswith('accepted SSH-2.0-')
        else:
            ok = accepted(result, expected_banner(target, family, port))
        if ok != (port in OPEN[client]):
            wrong[port] = result
    assert not wrong, 'ports that %s (IPv%d) should %s: %s' % (
        client, family, 'see differently', wrong)


def test_published_port_is_filtered_by_source(matrix):
    """The Docker case: 587 on dms-fw-nft is DNAT'd to a second container, past the input hook."""
    assert accepted(matrix[(OFFICE, 'dms-fw-nft', 4, 587)], BACKEND)      # allowed source: reaches it
    assert not matrix[(OUTSIDE, 'dms-fw-nft', 4, 587)].startswith('accepted')   # other source: dropped


def test_input_rules_do_not_see_published_ports():
    """Why the forward rules exist: dms-fw-nft's input chain drops everything not listed (8080 is not), yet
    8080, published by the emulated engine, accepts from anywhere - DNAT'd traffic never meets the input hook."""
    table = sh('dms-fw-nft', 'nft list chain inet dms_mailserver input')
    assert 'policy drop' in table and 'dport 8080' not in table
    result = probe(OUTSIDE, [endpoint('dms-fw-nft', 'dms-fw-outside', 4, 8080)])
    assert accepted(list(result.values())[0], BACKEND)


def test_auto_chose_the_backend_the_host_uses():
    # dms-fw-nft: auto -> nftables (the role's table has an input chain); dms-fw-firewalld: auto -> firewalld.
    assert 'chain input' in sh('dms-fw-nft', 'nft list table inet dms_mailserver')
    assert 'dms-mailserver-587' in sh('dms-fw-firewalld', 'firewall-cmd --list-services; firewall-cmd --list-rich-rules')
    assert 'Status: active' in sh('dms-fw-ufw', 'ufw status')


def test_ipv6_rules_exist():
    nft = sh('dms-fw-nft', 'nft list table inet dms_mailserver')
    assert 'ip6 saddr fd42:198:1::/64 tcp dport 587 accept' in nft
    ufw = sh('dms-fw-ufw', 'ufw status')
    assert '587/tcp                    ALLOW       fd42:198:1::/64' in ufw
    assert '25/tcp (v6)' in ufw
    rich = sh('dms-fw-firewalld', 'firewall-cmd --list-rich-rules')
    assert 'rule family="ipv6" source address="fd42:198:1::/64" service name="dms-mailserver-587" accept' in rich


def test_nftables_table_is_persisted_for_boot():
    unit = sh('dms-fw-nft', 'cat /etc/systemd/system/dms-mailserver-firewall.service')
    assert 'ExecStart=/usr/sbin/nft -f /etc/dms-mailserver/firewall.nft' in unit
    assert 'After=nftables.service' in unit
    # The file the unit loads is the table that is loaded.
    sh('dms-fw-nft', 'nft --check --file /etc/dms-mailserver/firewall.nft')
    loaded = sh('dms-fw-nft', 'nft --stateless list table inet dms_mailserver')
    assert loaded == sh('dms-fw-nft', 'cat /etc/dms-mailserver/firewall.nft.loaded')


def test_ufw_host_filters_published_ports_in_its_own_nftables_table():
    """ufw's rules live in the input path; with an engine the role adds only the forward chain for them."""
    table = sh('dms-fw-ufw', 'nft list table inet dms_mailserver')
    assert 'chain forward' in table and 'chain input' not in table
    assert 'ct original proto-dst 587' in table


def test_firewalld_host_without_engine_has_no_nftables_table():
    assert sh('dms-fw-firewalld', 'nft list table inet dms_mailserver', check=False) == ''
    assert sh('dms-fw-firewalld', 'test -e /etc/dms-mailserver && echo present || true') == ''


def test_ufw_leaves_the_hosts_identical_rule_alone():
    """The host had `ufw allow 22/tcp`: the role's SSH rule is the same rule, so it is not added or claimed."""
    added = sh('dms-fw-ufw', 'ufw show added')
    assert 'ufw allow 22/tcp\n' in added
    assert "dms-mailserver ssh" not in added
    assert "ufw allow 2222/tcp comment 'host rule'" in added
