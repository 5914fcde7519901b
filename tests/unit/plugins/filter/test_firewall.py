# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall role's plan: rules, lock-out check, nftables text, ufw and firewalld changes.

The molecule scenario "firewall" loads these plans into real nftables, ufw and firewalld; these tests pin the
decisions (which rule, which source, what is left alone) case by case.
"""
from __future__ import annotations

import binascii

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter.firewall import (
    build_rules, dms_firewall_plan, firewalld_plan, lockout, nft_ruleset, rich_rule, ssh_connection, ufw_plan,
    ufw_tuples,
)
from ansible_collections.dms.mailserver.plugins.filter.ports import dms_host_port_list, dms_mail_ports

OFFICE4 = '198.51.100.0/24'
OFFICE6 = '2001:db8:1::/48'


def by_key(rules):
    return {r['key']: r for r in rules}


def test_rules_follow_the_mail_ports_and_add_ssh():
    rules = by_key(build_rules(dms_mail_ports({}), ssh_port=22))
    expected = ['22/tcp', '25/tcp', '143/tcp', '465/tcp', '587/tcp', '993/tcp']
    assert sorted(rules, key=lambda k: int(k.split('/')[0])) == expected
    assert rules['22/tcp']['ssh'] and not rules['22/tcp']['mail']
    assert rules['25/tcp']['everywhere'] and rules['25/tcp']['v4'] == ['0.0.0.0/0'] and rules['25/tcp']['v6'] == ['::/0']
    assert rules['587/tcp']['name'] == 'dms-mailserver-587'
    assert rules['22/tcp']['name'] == 'dms-mailserver-ssh-22'


def test_sources_split_by_family_and_sorted():
    rules = by_key(build_rules([587, 993], sources={587: [OFFICE6, '203.0.113.9', OFFICE4], '993': [OFFICE4]}))
    assert rules['587/tcp']['v4'] == [OFFICE4, '203.0.113.9/32']
    assert rules['587/tcp']['v6'] == [OFFICE6]
    assert not rules['587/tcp']['everywhere']
    assert rules['993/tcp']['v6'] == []   # IPv4-only list: no IPv6 source at all


def test_extra_ports_with_protocols():
    rules = by_key(build_rules([25], extra_ports=[8080, '51820/udp', '8443/tcp'], sources={'51820/udp': [OFFICE4]}))
    assert rules['51820/udp']['name'] == 'dms-mailserver-51820-udp'
    assert rules['51820/udp']['v4'] == [OFFICE4]
    assert '8080/tcp' in rules and '8443/tcp' in rules


def test_ipv6_off_keeps_ssh_on_both_families():
    rules = by_key(build_rules([25], ipv6=False))
    assert rules['25/tcp']['v6'] == [] and rules['25/tcp']['v4'] == ['0.0.0.0/0']
    assert rules['22/tcp']['v6'] == ['::/0']


def test_ssh_sources_and_ssh_port_also_listed_as_extra_port():
    rules = by_key(build_rules([25], ssh_port=2222, ssh_sources=[OFFICE4]))
    assert rules['2222/tcp']['v4'] == [OFFICE4] and rules['2222/tcp']['v6'] == []
    # Listed as an extra port too: that purpose accepts everyone, so the port does.
    rules = by_key(build_rules([25], extra_ports=[2222], ssh_port=2222, ssh_sources=[OFFICE4]))
    assert rules['2222/tcp']['everywhere'] and rules['2222/tcp']['ssh'] and rules['2222/tcp']['mail']


@pytest.mark.parametrize('kwargs,field', [
    ({'ports': [0]}, 'dms_firewall_ports[0]'),
    ({'ports': ['smtp']}, 'dms_firewall_ports[0]'),
    ({'ports': [25], 'extra_ports': ['80/icmp']}, 'dms_firewall_extra_ports[0]'),
    ({'ports': [25], 'extra_ports': [True]}, 'dms_firewall_extra_ports[0]'),
    ({'ports': [25], 'sources': {587: [OFFICE4]}}, 'dms_firewall_sources.587'),
    ({'ports': [25], 'sources': {25: ['10.1.2.3/8']}}, 'dms_firewall_sources.25[0]'),
    ({'ports': [25], 'sources': {25: ['not-an-address']}}, 'dms_firewall_sources.25[0]'),
    ({'ports': [25], 'sources': {25: []}}, 'dms_firewall_sources.25'),
    ({'ports': [25], 'sources': {25: OFFICE4}}, 'dms_firewall_sources.25'),
    ({'ports': [25], 'sources': {22: [OFFICE4]}}, 'dms_firewall_sources.22'),
    ({'ports': [25], 'sources': {25: [OFFICE6]}, 'ipv6': False}, 'dms_firewall_sources.25[0]'),
    ({'ports': [25], 'ssh_sources': ['300.1.1.1']}, 'dms_firewall_ssh_sources[0]'),
    ({'ports': [25], 'ssh_port': 70000}, 'dms_firewall_ssh_port'),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(AnsibleFilterError) as err:
        build_rules(**kwargs)
    assert str(err.value).startswith(field + ':'), str(err.value)


def test_host_bits_error_suggests_the_network():
    with pytest.raises(AnsibleFilterError, match='the network is 10.0.0.0/8'):
        build_rules([25], sources={25: ['10.1.2.3/8']})


@pytest.mark.parametrize('text,expected', [
    ('198.51.100.7 51234 192.0.2.10 22', {'client': '198.51.100.7', 'port': 22}),
    ('2001:db8::7 51234 2001:db8::1 2222', {'client': '2001:db8::7', 'port': 2222}),
    ('::ffff:198.51.100.7 51234 ::ffff:192.0.2.10 22', {'client': '198.51.100.7', 'port': 22}),
    ('fe80::1%eth0 5 fe80::2%eth0 22', {'client': 'fe80::1', 'port': 22}),
    ('', {}),
    ('garbage', {}),
    ('x y z w', {}),
])
def test_ssh_connection(text, expected):
    assert ssh_connection(text) == expected


def test_lockout():
    rules = build_rules([25], ssh_port=22, ssh_sources=[OFFICE4, OFFICE6])
    assert lockout(rules, 22, '198.51.100.9') == ''
    assert lockout(rules, 22, '2001:db8:1::5') == ''
    assert 'only from 198.51.100.0/24, 2001:db8:1::/48, not from 203.0.113.5' in lockout(rules, 22, '203.0.113.5')
    assert 'do not open port 2222/tcp' in lockout(rules, 2222, '198.51.100.9')
    assert lockout(rules, 22, None) == ''     # source unknown: the port is open, that is all that can be said
    assert lockout(rules, None, None) == ''   # not connected over SSH (local connection)
    # Another rule for the connection port (an extra port open to everyone) keeps it too.
    assert lockout(build_rules([25], extra_ports=[22], ssh_port=2222), 22, '203.0.113.5') == ''


def test_nft_input_chain():
    rules = build_rules([25, 587], extra_ports=['51820/udp'], sources={587: [OFFICE4, OFFICE6]}, ssh_port=22)
    text = nft_ruleset(rules, input_chain=True, forward_chain=False)
    assert text.startswith('#!/usr/sbin/nft -f\n')
    # Atomic replacement: create (so that delete cannot fail), delete, define, in one nft -f transaction.
    assert 'table inet dms_mailserver\ndelete table inet dms_mailserver\n\ntable inet dms_mailserver {' in text
    assert 'type filter hook input priority filter; policy drop;' in text
    assert text.index('ct state established,related accept') < text.index('tcp dport 22 accept')
    assert 'tcp dport 22 accept comment "22/tcp ssh"' in text
    assert 'tcp dport 25 accept comment "25/tcp"' in text
    assert 'ip saddr 198.51.100.0/24 tcp dport 587 accept' in text
    assert 'ip6 saddr 2001:db8:1::/48 tcp dport 587 accept' in text
    assert 'udp dport 51820 accept' in text
    assert 'chain forward' not in text


def test_nft_forward_chain_filters_published_restricted_ports_by_original_port():
    rules = build_rules([25, 587], sources={587: [OFFICE4, '203.0.113.0/24']}, ssh_port=22, ssh_sources=[OFFICE4])
    text = nft_ruleset(rules, input_chain=False, forward_chain=True)
    assert 'chain input' not in text
    assert 'type filter hook forward priority filter; policy accept;' in text
    match = 'ct state new ct status dnat meta l4proto tcp ct original proto-dst 587'
    assert 'ip saddr { 198.51.100.0/24, 203.0.113.0/24 } %s accept' % match in text
    assert '\t\t%s drop comment "587/tcp published"' % match in text
    assert text.index('%s accept' % match) < text.index('%s drop' % match)
    assert 'proto-dst 25 ' not in text      # open to everyone: nothing to filter
    assert 'proto-dst 22 ' not in text      # SSH is not published by an engine


def test_nft_ipv6_off_limits_open_ports_to_ipv4():
    text = nft_ruleset(build_rules([25], ipv6=False), input_chain=True, forward_chain=True)
    assert 'meta nfproto ipv4 tcp dport 25 accept' in text
    # Published with IPv6 (NAT66) it would be dropped too, as the input chain drops it.
    assert 'meta nfproto ipv4 ct state new ct status dnat meta l4proto tcp ct original proto-dst 25 accept' in text


def test_nft_no_table_without_chains():
    rules = build_rules([25])
    assert nft_ruleset(rules, input_chain=False, forward_chain=True) == ''
    assert nft_ruleset([], input_chain=True) == ''


def hexc(text):
    return binascii.hexlify(text.encode()).decode()


UFW_RULES = '\n'.join([
    '*filter',
    '### RULES ###',
    '### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in',
    '### tuple ### allow tcp 25 0.0.0.0/0 any 0.0.0.0/0 in comment=%s' % hexc('dms-mailserver'),
    '### tuple ### allow tcp 110 0.0.0.0/0 any 0.0.0.0/0 in comment=%s' % hexc('dms-mailserver'),
    '### tuple ### allow tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in comment=%s' % hexc('dms-mailserver ssh'),
    '### tuple ### allow any 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in',
    '### tuple ### deny tcp 587 0.0.0.0/0 any 0.0.0.0/0 in_eth1 comment=%s' % hexc('host rule'),
    '-A ufw-user-input -p tcp --dport 25 -j ACCEPT',
    '### tuple ### allow tcp 25 ::/0 any ::/0 in comment=%s' % hexc('dms-mailserver'),
])


def test_ufw_tuples():
    tuples = ufw_tuples(UFW_RULES)
    assert len(tuples) == 7
    assert tuples[0] == {'action': 'allow', 'proto': 'tcp', 'dport': '22', 'dst': '0.0.0.0/0', 'sport': 'any',
                         'src': '0.0.0.0/0', 'direction': 'in', 'apps': False, 'comment': ''}
    assert tuples[1]['comment'] == 'dms-mailserver'
    assert tuples[4]['apps'] and tuples[4]['direction'] == 'in'
    assert tuples[5]['direction'] == 'in_eth1' and tuples[5]['comment'] == 'host rule'


def test_ufw_plan_adds_missing_deletes_stale_and_claims_nothing():
    rules = build_rules([25, 587], sources={587: [OFFICE4]}, ssh_port=22)
    plan = ufw_plan(rules, ufw_tuples(UFW_RULES))
    # 110 (no longer a mail port) and the old SSH port 2222 are the role's and go; nothing else.
    assert plan['delete'] == [
        {'rule': 'allow', 'proto': 'tcp', 'from_ip': '0.0.0.0/0', 'to_port': '110', 'comment': 'dms-mailserver'},
        {'rule': 'allow', 'proto': 'tcp', 'from_ip': '0.0.0.0/0', 'to_port': '2222', 'comment': 'dms-mailserver ssh'},
    ]
    # 25 exists for both families; 22/tcp over IPv4 is the host's own identical rule: left alone, not claimed.
    assert plan['add'] == [
        {'rule': 'allow', 'proto': 'tcp', 'from_ip': '::/0', 'to_port': '22', 'comment': 'dms-mailserver ssh'},
        {'rule': 'allow', 'proto': 'tcp', 'from_ip': OFFICE4, 'to_port': '587', 'comment': 'dms-mailserver'},
    ]


def test_ufw_plan_is_empty_when_converged():
    rules = build_rules([25], ssh_port=2222, ipv6=True)
    tuples = ufw_tuples('\n'.join([
        '### tuple ### allow tcp 25 0.0.0.0/0 any 0.0.0.0/0 in comment=%s' % hexc('dms-mailserver'),
        '### tuple ### allow tcp 25 ::/0 any ::/0 in comment=%s' % hexc('dms-mailserver'),
        '### tuple ### allow tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in comment=%s' % hexc('dms-mailserver ssh'),
        '### tuple ### allow tcp 2222 ::/0 any ::/0 in comment=%s' % hexc('dms-mailserver ssh'),
    ]))
    assert ufw_plan(rules, tuples) == {'delete': [], 'add': []}


def test_ufw_plan_relabels_a_role_rule_whose_purpose_changed():
    # Port 2222 was an extra port and is now the SSH port: the same rule, re-added with the new comment
    # (ufw updates a rule's comment in place), not deleted.
    rules = build_rules([25], ssh_port=2222, ipv6=False)
    tuples = ufw_tuples('### tuple ### allow tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in comment=%s' % hexc('dms-mailserver'))
    plan = ufw_plan(rules, tuples)
    assert plan['delete'] == []
    assert {'rule': 'allow', 'proto': 'tcp', 'from_ip': '0.0.0.0/0', 'to_port': '2222',
            'comment': 'dms-mailserver ssh'} in plan['add']


def test_ufw_absent_keeps_the_ssh_rule():
    plan = ufw_plan([], ufw_tuples(UFW_RULES), keep_ssh=True)
    assert [d['to_port'] for d in plan['delete']] == ['25', '110', '25']
    assert plan['add'] == []


def test_rich_rule_is_firewalld_canonical():
    assert rich_rule('ipv4', OFFICE4, 'dms-mailserver-587') == (
        'rule family="ipv4" source address="198.51.100.0/24" service name="dms-mailserver-587" accept')
    assert rich_rule('ipv4', '0.0.0.0/0', 'dms-mailserver-25') == (
        'rule family="ipv4" service name="dms-mailserver-25" accept')


def test_firewalld_plan():
    rules = build_rules([25, 587], sources={587: [OFFICE4, OFFICE6]}, ssh_port=22)
    current_rich = [rich_rule('ipv4', '203.0.113.0/24', 'dms-mailserver-587'),
                    'rule family="ipv4" source address="10.0.0.0/8" port port="2223" protocol="tcp" accept']
    plan = firewalld_plan(rules, services=['ssh', 'dms-mailserver-25', 'dms-mailserver-110'],
                          rich_rules=current_rich, service_files=['dms-mailserver-110', 'dms-mailserver-25'])
    assert plan['services'] == ['dms-mailserver-ssh-22', 'dms-mailserver-25']
    assert plan['rich_rules'] == [rich_rule('ipv4', OFFICE4, 'dms-mailserver-587'),
                                  rich_rule('ipv6', OFFICE6, 'dms-mailserver-587')]
    assert plan['remove_services'] == ['dms-mailserver-110']
    assert plan['remove_rich_rules'] == [rich_rule('ipv4', '203.0.113.0/24', 'dms-mailserver-587')]
    assert plan['remove_service_files'] == ['dms-mailserver-110']
    assert [f['name'] for f in plan['service_files']] == ['dms-mailserver-ssh-22', 'dms-mailserver-25',
                                                          'dms-mailserver-587']


def test_firewalld_ipv6_off_uses_an_ipv4_rich_rule_for_open_ports():
    plan = firewalld_plan(build_rules([25], ipv6=False))
    assert plan['services'] == ['dms-mailserver-ssh-22']
    assert plan['rich_rules'] == ['rule family="ipv4" service name="dms-mailserver-25" accept']


def test_firewalld_absent_keeps_the_ssh_service():
    plan = firewalld_plan([], services=['ssh', 'dms-mailserver-ssh-22', 'dms-mailserver-25'],
                          rich_rules=[rich_rule('ipv4', OFFICE4, 'dms-mailserver-587'),
                                      rich_rule('ipv4', OFFICE4, 'dms-mailserver-ssh-22')],
                          service_files=['dms-mailserver-ssh-22', 'dms-mailserver-25', 'dms-mailserver-587'],
                          keep_ssh=True)
    assert plan['remove_services'] == ['dms-mailserver-25']
    assert plan['remove_rich_rules'] == [rich_rule('ipv4', OFFICE4, 'dms-mailserver-587')]
    assert plan['remove_service_files'] == ['dms-mailserver-25', 'dms-mailserver-587']
    assert plan['services'] == [] and plan['rich_rules'] == [] and plan['service_files'] == []


def base(**kw):
    config = {'state': 'present', 'backend': 'nftables', 'engine': 'docker', 'ports': [25, 465, 587, 993],
              'sources': {587: [OFFICE4]}, 'ssh_port': 'auto', 'ssh_connection': '198.51.100.7 5123 192.0.2.1 2222'}
    config.update(kw)
    return config


def test_plan_keeps_the_connection_port_by_default():
    plan = dms_firewall_plan(base())
    assert plan['ssh_port'] == 2222 and plan['lockout'] == ''
    assert plan['connection'] == {'port': 2222, 'client': '198.51.100.7', 'source': 'SSH_CONNECTION'}
    assert 'tcp dport 2222 accept' in plan['nft'] and 'chain forward' in plan['nft']
    assert plan['ufw'] == {} and plan['firewalld'] == {}


def test_plan_stops_a_lockout_and_says_why():
    plan = dms_firewall_plan(base(ssh_port=22))
    assert plan['lockout'].startswith('this run would lock Ansible out and was stopped before changing anything: '
                                      'it is connected to port 2222/tcp from 198.51.100.7 (SSH_CONNECTION), and '
                                      'the planned rules do not open port 2222/tcp at all.')
    plan = dms_firewall_plan(base(ssh_sources=['203.0.113.0/24']))
    assert 'accept port 2222/tcp only from 203.0.113.0/24, not from 198.51.100.7' in plan['lockout']


def test_plan_falls_back_to_ansible_port_and_warns_about_unknown_source():
    plan = dms_firewall_plan(base(ssh_connection='', connection_port='2200', ssh_sources=[OFFICE4]))
    assert plan['ssh_port'] == 2200 and plan['lockout'] == ''
    assert plan['warnings'] and 'source address is unknown' in plan['warnings'][0]
    plan = dms_firewall_plan(base(ssh_connection='', connection_port=''))
    assert plan['ssh_port'] == 22 and plan['connection']['source'] is None


def test_plan_without_engine_or_with_ufw_has_no_table_unless_needed():
    assert dms_firewall_plan(base(backend='ufw', engine='none', ufw_rules=''))['nft'] == ''
    plan = dms_firewall_plan(base(backend='ufw', ufw_rules=''))
    assert 'chain forward' in plan['nft'] and 'chain input' not in plan['nft']
    assert plan['ufw']['add']


def test_plan_absent():
    plan = dms_firewall_plan(base(state='absent', backend='ufw', ufw_rules=UFW_RULES))
    assert plan['rules'] == [] and plan['nft'] == '' and plan['lockout'] == ''
    assert len(plan['ufw']['delete']) == 3 and plan['ufw']['add'] == []


@pytest.mark.parametrize('config,message', [
    (base(state='gone'), 'dms_firewall_state'),
    (base(backend='iptables'), 'dms_firewall_backend'),
    (base(engine='lxc'), 'dms_firewall_container_engine'),
    (base(ssh_port='ssh'), 'dms_firewall_ssh_port'),
    ('nope', 'expected a dict'),
])
def test_plan_bad_input(config, message):
    with pytest.raises(AnsibleFilterError, match=message):
        dms_firewall_plan(config)


def test_host_port_list():
    assert dms_host_port_list([25, 587, 993], {587: 2587, '993': 1993}) == [25, 1993, 2587]
    assert dms_host_port_list([25], None) == [25]
    with pytest.raises(AnsibleFilterError):
        dms_host_port_list([25], [1, 2])


def test_plan_ufw_with_ipv6_off_takes_no_ipv6_rules_and_says_so():
    plan = dms_firewall_plan(base(backend='ufw', engine='none', ufw_rules='',
                                  ufw_defaults='# comment\nIPV6=no\nDEFAULT_INPUT_POLICY="DROP"\n'))
    assert plan['ufw']['add'] and all(':' not in a['from_ip'] for a in plan['ufw']['add'])
    assert 'IPV6=no' in plan['warnings'][0]
    plan = dms_firewall_plan(base(backend='ufw', engine='none', ufw_rules='', ufw_defaults='IPV6=yes\n'))
    assert any(a['from_ip'] == '::/0' for a in plan['ufw']['add']) and plan['warnings'] == []


@pytest.mark.parametrize('value,expected', [(False, False), ('false', False), ('no', False), ('yes', True), (1, True)])
def test_plan_ipv6_switch_accepts_ansible_booleans(value, expected):
    plan = dms_firewall_plan(base(ipv6=value, sources={}))
    rule = [r for r in plan['rules'] if r['port'] == 25][0]
    assert (rule['v6'] == ['::/0']) is expected


def test_plan_ipv6_switch_rejects_non_booleans():
    with pytest.raises(AnsibleFilterError, match='dms_firewall_ipv6'):
        dms_firewall_plan(base(ipv6='maybe'))
