# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter.dns import dms_dns_records, dms_dns_table

DKIM_COM = {'domain': 'example.com', 'selector': 'mail', 'name': 'mail._domainkey.example.com',
            'value': 'v=DKIM1; k=rsa; p=' + 'A' * 392}


def host(name='mx1', hostname='mx1.example.com', domains=('example.com',), **extra):
    item = {'host': name, 'hostname': hostname, 'domains': list(domains), 'dkim': [], 'ports': [25, 465, 587, 993],
            'addresses': ['postmaster@example.com'], 'options': {}}
    item.update(extra)
    return item


def a_note(name='mx1'):
    hostname = '%s.example.com' % name
    return ('%s: no A record listed for this name (dms_dns_ipv4 is not set for %s), and the MX records point at it: '
            'publish %s A <its public IPv4 address> if it is not published yet, or set dms_dns_ipv4 to list it here'
            % (hostname, name, hostname))


def of(dns, purpose, domain='example.com'):
    return [r for r in dns['records'] if r['purpose'] == purpose and r['domain'] == domain]


def test_basic_records_for_two_hosts():
    dns = dms_dns_records([host(dkim=[DKIM_COM]),
                           host('mx2', 'mx2.example.com', options={'mx_priority': 20}, dkim=[DKIM_COM])])
    assert [(r['priority'], r['value'], r['rdata'], r['hosts']) for r in of(dns, 'mx')] == [
        (10, 'mx1.example.com', '10 mx1.example.com.', ['mx1']),
        (20, 'mx2.example.com', '20 mx2.example.com.', ['mx2'])]
    spf, = of(dns, 'spf')
    assert (spf['name'], spf['type'], spf['value'], spf['rdata']) == \
        ('example.com', 'TXT', 'v=spf1 mx ~all', '"v=spf1 mx ~all"')
    dmarc, = of(dns, 'dmarc')
    assert (dmarc['name'], dmarc['value']) == ('_dmarc.example.com',
                                               'v=DMARC1; p=none; rua=mailto:postmaster@example.com')
    dkim, = of(dns, 'dkim')
    assert dkim['hosts'] == ['mx1', 'mx2'] and dkim['value'] == DKIM_COM['value']
    assert [len(c) for c in dkim['chunks']] == [255, len(DKIM_COM['value']) - 255]
    assert dkim['rdata'] == '"%s" "%s"' % tuple(dkim['chunks'])
    assert all(r['ttl'] == 3600 and r['required'] for r in dns['records'])
    # No dms_dns_ipv4: each MX target gets a reminder that it needs an A record.
    assert dns['notes'] == [a_note('mx1'), a_note('mx2')] and dns['mta_sts_policies'] == {}


def test_different_keys_under_one_name_fail():
    other = dict(DKIM_COM, value='v=DKIM1; k=rsa; p=BBBB')
    with pytest.raises(AnsibleFilterError) as err:
        dms_dns_records([host(dkim=[DKIM_COM]), host('mx2', 'mx2.example.com', dkim=[other])])
    assert 'mx1 and mx2 have different DKIM keys under the same record mail._domainkey.example.com' in str(err.value)


def test_a_key_not_made_yet_is_a_note():
    dns = dms_dns_records([host(dkim=[dict(DKIM_COM, value=None)])])
    assert of(dns, 'dkim') == []
    assert dns['notes'] == ['mail._domainkey.example.com: mx1 has no DKIM key for example.com yet (selector mail): '
                            'run the site playbook, then this one again', a_note()]


def test_options_and_notes():
    dns = dms_dns_records([host(addresses=[], relays={'example.com': 'smtp.relay.test'}, ipv4=['192.0.2.10'],
                                ipv6=['2001:db8::10'], bind_address='::',
                                options={'ttl': 300, 'spf': 'v=spf1 mx include:relay.test -all',
                                         'dmarc_policy': 'quarantine', 'dmarc_rua': 'reports@{domain}'})])
    assert of(dns, 'spf')[0]['value'] == 'v=spf1 mx include:relay.test -all'
    assert of(dns, 'dmarc')[0]['value'] == 'v=DMARC1; p=quarantine; rua=mailto:reports@example.com'
    addresses = [(r['name'], r['type'], r['value']) for r in dns['records'] if r['purpose'] == 'address']
    assert addresses == [('mx1.example.com', 'A', '192.0.2.10'), ('mx1.example.com', 'AAAA', '2001:db8::10')]
    assert all(r['ttl'] == 300 for r in dns['records'])
    notes = '\n'.join(dns['notes'])
    assert 'reverse DNS name of 192.0.2.10 should be mx1.example.com' in notes
    assert 'no AAAA record' not in notes
    assert 'example.com: mail from this domain leaves through the relay smtp.relay.test' in notes
    assert 'DMARC reports go to reports@example.com, which is no account or alias on mx1' in notes
    # No rua at all, and a catch-all receives the reports.
    dns = dms_dns_records([host(addresses=['@example.com'], options={'dmarc_rua': ''})])
    assert of(dns, 'dmarc')[0]['value'] == 'v=DMARC1; p=none' and dns['notes'] == [a_note()]


def test_the_a_record_reminder_is_only_there_without_dms_dns_ipv4():
    assert a_note() in dms_dns_records([host()])['notes']
    assert a_note() in dms_dns_table(dms_dns_records([host()]))
    with_address = dms_dns_records([host(ipv4=['192.0.2.10'])])
    assert not any('no A record' in n for n in with_address['notes'])
    assert [(r['type'], r['value']) for r in with_address['records'] if r['purpose'] == 'address'] == \
        [('A', '192.0.2.10')]


def test_client_srv_records_use_the_published_host_ports():
    dns = dms_dns_records([host(ports=[25, 143, 465, 587, 993], host_ports={'587': 2587},
                                options={'client_hints': 'true'})])
    srv = [(r['name'], r['rdata'], r['required']) for r in of(dns, 'client')]
    assert srv == [('_submissions._tcp.example.com', '10 1 465 mx1.example.com.', False),
                   ('_submission._tcp.example.com', '10 1 2587 mx1.example.com.', False),
                   ('_imaps._tcp.example.com', '10 1 993 mx1.example.com.', False),
                   ('_imap._tcp.example.com', '10 1 143 mx1.example.com.', False)]


def test_mta_sts_lists_every_mx_and_its_id_follows_the_policy():
    hosts = [host(options={'mta_sts': True}), host('mx2', 'mx2.example.com', options={'mta_sts': True})]
    dns = dms_dns_records(hosts)
    policy = dns['mta_sts_policies']['example.com']
    assert policy == 'version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmax_age: 604800\n'
    sts, = of(dns, 'mta-sts')
    assert sts['name'] == '_mta-sts.example.com' and sts['value'].startswith('v=STSv1; id=')
    assert of(dns, 'tls-rpt')[0]['value'] == 'v=TLSRPTv1; rua=mailto:postmaster@example.com'
    again = dms_dns_records(hosts)
    assert of(again, 'mta-sts')[0]['value'] == sts['value']
    enforced = dms_dns_records([dict(h, options={'mta_sts': True, 'mta_sts_mode': 'enforce'}) for h in hosts])
    assert of(enforced, 'mta-sts')[0]['value'] != sts['value']


@pytest.mark.parametrize('options, message', [
    ({'dmarc_policy': 'strict'}, "mx1: dms_dns_dmarc_policy: 'strict' is not one of none, quarantine, reject"),
    ({'mx_priority': 'high'}, "mx1: dms_dns_mx_priority: 'high' is not a whole number"),
    ({'ttl': 0}, 'mx1: dms_dns_ttl: 0 is out of range'),
    ({'mta_sts_mode': 'on'}, "mx1: dms_dns_mta_sts_mode: 'on' is not one of"),
])
def test_bad_options(options, message):
    with pytest.raises(AnsibleFilterError) as err:
        dms_dns_records([host(options=options)])
    assert message in str(err.value)


def test_hosts_must_agree_on_a_domains_records():
    with pytest.raises(AnsibleFilterError) as err:
        dms_dns_records([host(), host('mx2', 'mx2.example.com', options={'dmarc_policy': 'reject'})])
    assert 'mx1 and mx2 both serve example.com but disagree on DMARC' in str(err.value)
    with pytest.raises(AnsibleFilterError):
        dms_dns_records([{'host': 'mx1'}])


def test_table():
    dns = dms_dns_records([host(dkim=[DKIM_COM], options={'client_hints': True}),
                           host('mx2', 'mx2.example.com', domains=['example.org'])])
    table = dms_dns_table(dns)
    lines = table.splitlines()
    assert lines[0] == '; example.com'
    assert 'example.com.' in lines[1] and lines[1].split()[1:] == ['3600', 'IN', 'MX', '10', 'mx1.example.com.']
    dkim_line, = [line for line in lines if line.startswith('mail._domainkey.example.com.')]
    assert dkim_line.endswith(' IN TXT   ' + of(dns, 'dkim')[0]['rdata'])
    assert any(line.endswith('; optional') and ' SRV ' in line for line in lines)
    assert '; example.org' in lines
    assert dms_dns_table(dns['records']).splitlines()[:3] == lines[:3]
    with pytest.raises(AnsibleFilterError):
        dms_dns_table('records')


@pytest.mark.parametrize('bind', [None, '0.0.0.0', '192.0.2.10'])
def test_no_aaaa_record_while_the_ports_are_published_on_ipv4_only(bind):
    dns = dms_dns_records([host(ipv4=['192.0.2.10'], ipv6=['2001:db8::10'], bind_address=bind)])
    addresses = [(r['type'], r['value']) for r in dns['records'] if r['purpose'] == 'address']
    assert addresses == [('A', '192.0.2.10')]
    notes = '\n'.join(dns['notes'])
    assert 'no AAAA record for 2001:db8::10' in notes and "DMS's IPv6 page" in notes


def test_keys_of_a_signer_that_is_off_are_not_published():
    dns = dms_dns_records([host(dkim_unused=[{'domain': 'example.com', 'selector': 'mail', 'backend': 'opendkim'}])])
    assert of(dns, 'dkim') == []
    assert any('no DKIM record for example.com (selector mail)' in n and 'ENABLE_OPENDKIM' in n
               for n in dns['notes']), dns['notes']
