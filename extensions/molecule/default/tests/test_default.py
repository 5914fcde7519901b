# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifier of the default scenario: real SMTP and IMAP against the converged container.

Every connection goes to 127.0.0.1, where the role published the container's ports.
"""
from __future__ import annotations

import imaplib
import json
import os
import re
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
from mailclient import HOST, tls_context  # noqa: E402
VARS = yaml.safe_load((SCENARIO / 'vars' / 'dms.yml').read_text())
PORTS = VARS['dms_host_ports']
ALICE = ('alice@example.com', VARS['dms_test_alice_password'])
BOB = ('bob@example.com', 'Bob-Molecule-Pw-2')
CONTAINER = VARS['dms_container_name']
IMAGE = os.environ.get('DMS_TEST_IMAGE') or 'dms-test:16'
# The same choice as vars/dms.yml: the setting in the syntax of the image's Dovecot.
VARS_DOVECOT = ({'ssl_server_prefer_ciphers': 'client'} if re.search(r':v?16', IMAGE)
                else {'ssl_prefer_server_ciphers': 'no'})
BASE = Path(VARS['dms_base_dir'])


def smtp_login_587(user, password):
    with smtplib.SMTP(HOST, PORTS[587], timeout=30) as smtp:
        smtp.starttls(context=tls_context())
        smtp.login(user, password)


def smtp_login_465(user, password):
    with smtplib.SMTP_SSL(HOST, PORTS[465], timeout=30, context=tls_context()) as smtp:
        smtp.login(user, password)


def imap_login(user, password):
    mailclient.imap_login(PORTS[993], user, password)


def login_fails(func, user, password):
    try:
        func(user, password)
    except (smtplib.SMTPAuthenticationError, imaplib.IMAP4.error):
        return True
    return False


def wait_for_message(user, password, marker, timeout=60):
    return mailclient.wait_for_message(PORTS[993], user, password, marker, timeout)


def send(to, sender=None, auth=None, port=25):
    """Send as real clients do: with Date: and Message-ID:, a fully qualified EHLO name, and on port 25 from a
    sender domain that resolves (the scenario's DNS server knows outside.test)."""
    msg, marker = mailclient.new_message(sender or 'tester@outside.test', to, 'molecule')
    if port == 25:
        mailclient.send_25(PORTS[25], msg)
    else:
        mailclient.submit(PORTS[587], auth[0], auth[1], msg)
    return marker


def container_started_at():
    out = subprocess.run(['docker', 'inspect', '-f', '{{.State.StartedAt}}', CONTAINER],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def converge(extra_vars):
    """Run the scenario's converge playbook again with changed inventory values; return its stats."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
           '-i', env['MOLECULE_INVENTORY_FILE'], str(SCENARIO / 'converge.yml'),
           '-e', json.dumps(extra_vars)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)['stats']['instance']


@pytest.mark.parametrize('login', [smtp_login_587, smtp_login_465, imap_login])
def test_login_with_right_password_and_not_with_wrong(login):
    login(*ALICE)
    assert login_fails(login, ALICE[0], ALICE[1] + '-wrong')


def test_port_25_accepts_mail_only_from_a_resolvable_sender():
    """DMS refuses a sender domain that does not resolve (reject_unknown_sender_domain); the scenario's DNS server
    resolves outside.test only."""
    with smtplib.SMTP(HOST, PORTS[25], timeout=60, local_hostname=mailclient.HELO) as smtp:
        smtp.ehlo()
        smtp.mail('tester@nowhere.test')
        code, text = smtp.rcpt('alice@example.com')
        assert code == 450 and b'Domain not found' in text, (code, text)
        smtp.rset()
        smtp.mail('tester@outside.test')
        assert smtp.rcpt('alice@example.com')[0] == 250


def test_dovecot_setting_of_the_release_line_is_applied():
    key, value = next(iter(VARS_DOVECOT.items()))
    out = subprocess.run(['docker', 'exec', CONTAINER, 'doveconf', '-h', key], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == value


def test_manual_certificate_renewed_on_the_host_is_served_without_a_role_run():
    """The role mounts the directories of dms_tls_cert and dms_tls_key, so a renewal that replaces the files on the
    host reaches the container, and DMS's change detector applies it (465 and 993) without a restart."""
    started = container_started_at()
    tls = Path(VARS['dms_base_dir']) / 'tls'
    key, cert, serial = mailclient.self_signed(tls / 'renewal', 'renewed', VARS['dms_hostname'])
    assert mailclient.served_serial(HOST, PORTS[993]) != serial
    # As certbot or an operator's copy does: new files renamed over the old ones.
    os.replace(str(key), str(tls / 'key.pem'))
    os.replace(str(cert), str(tls / 'cert.pem'))
    deadline = time.monotonic() + 120
    while not (mailclient.served_serial(HOST, PORTS[993]) == serial
               and mailclient.served_serial(HOST, PORTS[465]) == serial):
        assert time.monotonic() < deadline, 'the renewed certificate is not served after 2 minutes'
        time.sleep(2)
    assert container_started_at() == started


def test_alias_delivers_to_target_mailbox():
    marker = send('info@example.com')
    wait_for_message(*ALICE, marker)


def test_catch_all_does_not_swallow_real_account():
    marker = send('bob@example.com')
    body = wait_for_message(*BOB, marker)
    assert marker.encode() in body
    other = send('nobody@example.com')
    wait_for_message(*ALICE, other)


def test_submitted_mail_is_dkim_signed_and_verifies_with_returned_record():
    records = json.loads((BASE / 'dkim-records.json').read_text())
    record = [r for r in records if r['domain'] == 'example.com'][0]
    marker = send('bob@example.com', sender='alice@example.com', auth=ALICE, port=587)
    raw = wait_for_message(*BOB, marker)
    assert b'DKIM-Signature:' in raw

    def dnsfunc(name, timeout=5):
        if name.decode().rstrip('.') == record['name']:
            return record['value'].encode()
        return None
    assert dkim.verify(raw, dnsfunc=dnsfunc)


def test_password_change_applies_without_restart_then_idempotent():
    started = container_started_at()
    new = 'Alice-Changed-Pw-7'
    stats = converge({'dms_test_alice_password': new})
    assert stats['changed'] > 0
    deadline = time.monotonic() + 30
    while True:
        try:
            imap_login(ALICE[0], new)
            break
        except imaplib.IMAP4.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert login_fails(imap_login, *ALICE)
    assert login_fails(smtp_login_587, *ALICE)
    smtp_login_587(ALICE[0], new)
    assert container_started_at() == started
    stats = converge({'dms_test_alice_password': new})
    assert stats['changed'] == 0, stats
    assert container_started_at() == started


def test_removing_an_account_with_exclusive_removes_its_login():
    imap_login(*BOB)
    stats = converge({'dms_test_alice_password': 'Alice-Changed-Pw-7', 'dms_test_drop_bob': True})
    assert stats['changed'] > 0
    deadline = time.monotonic() + 30
    while not login_fails(imap_login, *BOB):
        assert time.monotonic() < deadline, 'bob can still log in'
        time.sleep(1)
    assert 'bob@example.com' not in (BASE / 'docker-data/dms/config/postfix-accounts.cf').read_text()
