# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifier of the multihost scenario: two mail servers converged from one inventory by dms.mailserver.site.

Both containers run on this host; every connection goes to 127.0.0.1 on the ports of each host's host_vars.
The tests run in file order: the password change comes last.
"""
from __future__ import annotations

import imaplib
import json
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import dkim
import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parents[2] / 'tests' / 'integration'))
import mailclient  # noqa: E402  (shared with the integration tests)
GROUP = yaml.safe_load((SCENARIO / 'inventory/group_vars/mailservers.yml').read_text())
HOSTS = dict((name, yaml.safe_load((SCENARIO / ('inventory/host_vars/%s.yml' % name)).read_text()))
             for name in ('mx1', 'mx2'))
LOCAL = mailclient.HOST
ALICE_PW = GROUP['dms_test_alice_password']
SHARED = dict((a['address'], ALICE_PW if a['address'] == 'alice@example.com' else a['password'])
              for a in GROUP['dms_shared_accounts'])
ONLY_MX2 = dict((a['address'], a['password']) for a in HOSTS['mx2']['dms_host_accounts'])
# The files that hold the group's state and must be the same on both hosts (the account hashes have salts of
# their own on each host, so postfix-accounts.cf is compared by what its hashes verify).
SAME_FILES = ['dovecot-quotas.cf', 'postfix-relaymap.cf', 'postfix-sasl-password.cf',
              'postfix-send-access.cf', 'opendkim/KeyTable', 'opendkim/SigningTable',
              'opendkim/keys/example.com/mail.private', 'opendkim/keys/example.org/mail.private',
              'opendkim/keys/example.com/mail.txt', 'opendkim/keys/example.org/mail.txt']


def config(host):
    return Path(HOSTS[host]['dms_base_dir']) / 'docker-data/dms/config'


def port(host, number):
    return HOSTS[host]['dms_host_ports'][number]


def imap_login(host, user, password):
    mailclient.imap_login(port(host, 993), user, password)


def imap_fails(host, user, password):
    try:
        imap_login(host, user, password)
    except imaplib.IMAP4.error:
        return True
    return False


def wait_for_login(host, user, password, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            imap_login(host, user, password)
            return
        except imaplib.IMAP4.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def wait_for_message(host, user, password, marker, timeout=60):
    return mailclient.wait_for_message(port(host, 993), user, password, marker, timeout)


def submit(host, sender, password, to):
    """Send a message through the host's submission port (587) as an authenticated user; return its marker."""
    msg, marker = mailclient.new_message(sender, to, 'multihost')
    mailclient.submit(port(host, 587), sender, password, msg)
    return marker


def ehlo_size(host):
    with smtplib.SMTP(LOCAL, port(host, 25), timeout=30) as smtp:
        smtp.ehlo('verifier.test')
        return int(smtp.esmtp_features['size'])


def doveadm_verifies(hashed, password):
    proc = subprocess.run(['doveadm', 'pw', '-t', hashed, '-p', password], capture_output=True, text=True,
                          check=False)
    return proc.returncode == 0


def accounts_file(host):
    lines = (config(host) / 'postfix-accounts.cf').read_text().splitlines()
    return dict((line.split('|')[0], line) for line in lines if line and not line.startswith('#'))


def started_at(host):
    out = subprocess.run(['docker', 'inspect', '-f', '{{.State.StartedAt}}', HOSTS[host]['dms_container_name']],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def snapshot(host):
    base = config(host)
    return dict((str(p.relative_to(base)), p.read_bytes()) for p in sorted(base.rglob('*'))
                if p.is_file() and p.name != '.dms-mailserver.lock')


def playbook(name_or_path, extra_vars=None):
    """Run a playbook against the scenario's inventory; return its JSON result (ansible.posix.json)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
           '-i', env['MOLECULE_INVENTORY_FILE'], str(name_or_path)]
    if extra_vars:
        cmd += ['-e', json.dumps(extra_vars)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_the_group_state_is_the_same_on_every_host():
    for name in SAME_FILES:
        one, two = (config('mx1') / name).read_bytes(), (config('mx2') / name).read_bytes()
        assert one == two, name
    # The aliases are the same; mx2 has in addition the self-alias that keeps its own account's mail out of the
    # catch-all @example.org.
    one = (config('mx1') / 'postfix-virtual.cf').read_text().splitlines()
    two = (config('mx2') / 'postfix-virtual.cf').read_text().splitlines()
    extra = ['%s %s' % (a, a) for a in ONLY_MX2]
    assert [line for line in two if line not in extra] == one and set(extra) <= set(two)
    # The files are not empty: the state is really there.
    assert b'alice@example.com:1G' in (config('mx1') / 'dovecot-quotas.cf').read_bytes()
    assert b'carol@example.org' in (config('mx1') / 'postfix-send-access.cf').read_bytes()
    assert b'[smtp.relay.test]:587' in (config('mx1') / 'postfix-relaymap.cf').read_bytes()
    for host in ('mx1', 'mx2'):
        lines = accounts_file(host)
        for address, password in SHARED.items():
            assert doveadm_verifies(lines[address].split('|')[1], password), (host, address)


@pytest.mark.parametrize('host', ['mx1', 'mx2'])
def test_every_shared_account_logs_in_on_every_host(host):
    for address, password in SHARED.items():
        imap_login(host, address, password)


def test_host_vars_override_one_host_only():
    address, password = next(iter(ONLY_MX2.items()))
    imap_login('mx2', address, password)
    assert address in accounts_file('mx2') and address not in accounts_file('mx1')
    assert imap_fails('mx1', address, password)
    limit = HOSTS['mx2']['dms_postfix_main']['message_size_limit']
    assert ehlo_size('mx2') == limit
    assert ehlo_size('mx1') != limit


def test_shared_dkim_one_record_and_each_server_signs_with_it(tmp_path):
    # One record per domain from dms.mailserver.dns, which fails when the hosts' keys differ under one name.
    playbook('dms.mailserver.dns', {'dms_dns_output_dir': str(tmp_path)})
    records = json.loads((tmp_path / 'dns-records.json').read_text())['records']
    dkim_records = dict((r['name'], r) for r in records if r['purpose'] == 'dkim')
    assert sorted(dkim_records) == ['mail._domainkey.example.com', 'mail._domainkey.example.org']
    for record in dkim_records.values():
        assert sorted(record['hosts']) == ['mx1', 'mx2']
    mx = sorted((r['priority'], r['value']) for r in records if r['type'] == 'MX' and r['domain'] == 'example.com')
    assert mx == [(10, 'mx1.example.com'), (20, 'mx2.example.com')]

    def dnsfunc(name, timeout=5):
        record = dkim_records.get(name.decode().rstrip('.'))
        return record['value'].encode() if record else None

    for host in ('mx1', 'mx2'):
        marker = submit(host, 'alice@example.com', ALICE_PW, 'bob@example.com')
        raw = wait_for_message(host, 'bob@example.com', SHARED['bob@example.com'], marker)
        assert b'DKIM-Signature:' in raw, host
        assert dkim.verify(raw, dnsfunc=dnsfunc), host
        # Negative control: the signature does not verify against another key.
        other = dict(dkim_records)
        other['mail._domainkey.example.com'] = dkim_records['mail._domainkey.example.org']
        assert not dkim.verify(raw, dnsfunc=lambda n, timeout=5: other[n.decode().rstrip('.')]['value'].encode())


def can_send(host, sender, password):
    """The marker of a submitted message, or None when Postfix refuses the sender (a send restriction).

    Postfix checks the sender restrictions at RCPT time (smtpd_delay_reject), so the refusal comes as a refused
    recipient whose reply names the sender.
    """
    try:
        return submit(host, sender, password, 'bob@example.com')
    except smtplib.SMTPSenderRefused:
        return None
    except smtplib.SMTPRecipientsRefused as exc:
        replies = [reply[1] for reply in exc.recipients.values()]
        if all(b'Sender address rejected' in reply for reply in replies):
            return None
        raise


@pytest.fixture
def restore_inventory():
    """Converge with the inventory as it is written afterwards, so that `molecule verify` can run again."""
    yield
    playbook(SCENARIO / 'converge.yml')


def test_accounts_playbook_lifts_a_restriction_with_a_reload_not_a_new_container(restore_inventory):
    carol = ('carol@example.org', SHARED['carol@example.org'])
    for host in ('mx1', 'mx2'):
        assert can_send(host, *carol) is None, 'carol may send on %s although restricted' % host
    started = dict((h, started_at(h)) for h in ('mx1', 'mx2'))
    # The inventory changed: carol may send now. The containers were created with the send table present, so
    # they have its hook and a `postfix reload` applies the new content: no new container.
    lifted = [dict(a, restrict=[]) if a['address'] == carol[0] else a for a in GROUP['dms_shared_accounts']]
    result = playbook('dms.mailserver.accounts', {'dms_shared_accounts': lifted})
    for host in ('mx1', 'mx2'):
        assert result['stats'][host]['changed'] > 0, result['stats']
        assert started_at(host) == started[host], 'the container of %s was recreated' % host
        assert carol[0] not in (config(host) / 'postfix-send-access.cf').read_text()
    for host in ('mx1', 'mx2'):
        deadline = time.monotonic() + 60
        while True:   # Postfix's reloaded processes take a moment
            try:
                marker = can_send(host, *carol)
                break
            except (OSError, smtplib.SMTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert marker, 'carol still may not send on %s' % host
        wait_for_message(host, 'bob@example.com', SHARED['bob@example.com'], marker)
    again = playbook('dms.mailserver.accounts', {'dms_shared_accounts': lifted})
    for host in ('mx1', 'mx2'):
        assert again['stats'][host]['changed'] == 0, again['stats']


def test_password_change_changes_every_host_and_nothing_else(restore_inventory):
    before = dict((h, snapshot(h)) for h in ('mx1', 'mx2'))
    accounts_before = dict((h, accounts_file(h)) for h in ('mx1', 'mx2'))
    started = dict((h, started_at(h)) for h in ('mx1', 'mx2'))
    new = 'Alice-Multi-Changed-7'
    result = playbook(SCENARIO / 'converge.yml', {'dms_test_alice_password': new})
    for host in ('mx1', 'mx2'):
        assert result['stats'][host]['changed'] > 0, result['stats']
        after = snapshot(host)
        changed = sorted(name for name in set(before[host]) | set(after)
                         if before[host].get(name) != after.get(name))
        assert changed == ['postfix-accounts.cf'], (host, changed)
        accounts_after = accounts_file(host)
        assert sorted(accounts_after) == sorted(accounts_before[host])
        for address, line in accounts_after.items():
            if address == 'alice@example.com':
                assert line != accounts_before[host][address]
                assert doveadm_verifies(line.split('|')[1], new)
            else:
                assert line == accounts_before[host][address], (host, address)
    changed_state = dict((h, snapshot(h)) for h in ('mx1', 'mx2'))
    for host in ('mx1', 'mx2'):
        wait_for_login(host, 'alice@example.com', new)
        assert imap_fails(host, 'alice@example.com', ALICE_PW)
        imap_login(host, 'bob@example.com', SHARED['bob@example.com'])
        assert started_at(host) == started[host], 'the container of %s was restarted' % host
    again = playbook(SCENARIO / 'converge.yml', {'dms_test_alice_password': new})
    for host in ('mx1', 'mx2'):
        assert again['stats'][host]['changed'] == 0, again['stats']
        assert snapshot(host) == changed_state[host], host
