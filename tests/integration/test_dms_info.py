# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_info through real ansible-playbook runs: against a config dir in DMS's own formats served by the stand-in of
each release line (what ``setup email list`` and ``setup alias list`` show, live quota usage, the change detector,
the DMS version), drift after the real state modules converged, and the report playbook.

One container per release line, named uniquely, labelled org.dms-test.pytest=1, no published port, removed at
the end. A test that changes a file holds the change detector with its own lock while it looks at the pending
change.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from dmstest import doveadm_hash, run_play
from pbtest import Group, run_playbook

LINES = ('15.1', '16')
IMAGES = {line: os.environ.get('DMS_TEST_IMAGE_%s' % line.split('.', maxsplit=1)[0]) or 'dms-test:%s' % line
          for line in LINES}
READY_TIMEOUT = 240  # a loaded 2-core machine starts DMS 16 slowly
PASSWORDS = {'alice@example.com': 'Info-Alice-Pw-1', 'bob@example.com': 'Info-Bob-Pw-2',
             'jimbob@example.com': 'Info-Jimbob-Pw-3'}
RELAY_PW = 'Info-Relay-Pw-4'
CHKSUM_FILE = '/tmp/docker-mailserver-config-chksum'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: runs containers')


def _run(*args, check=True, **kwargs):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)


def dms_fixture(config):
    """The files as DMS's setup commands write them (dms-behaviour.md §1-§2):
    setup email add (x3), setup alias add (info twice, sales, Team unlowercased), setup quota set (x3, jimbob's
    line before bob's), setup email restrict add send bob, setup relay add-domain / add-auth / exclude-domain."""
    config.mkdir(parents=True)
    config.chmod(0o755)
    (config / 'postfix-accounts.cf').write_text(''.join('%s|%s\n' % (a, doveadm_hash(p)) for a, p in PASSWORDS.items()))
    (config / 'postfix-virtual.cf').write_text(
        'info@example.com alice@example.com,bob@example.com\nsales@example.com bob@example.com\n'
        'Team@example.com alice@example.com\n')
    (config / 'dovecot-quotas.cf').write_text('alice@example.com:10M\njimbob@example.com:5M\nbob@example.com:20M\n')
    (config / 'postfix-send-access.cf').write_text('bob@example.com \t\t REJECT\n')
    (config / 'postfix-relaymap.cf').write_text('@example.org [smtp.relay.test]:587\n@internal.example.net \n')
    (config / 'postfix-sasl-password.cf').write_text('@example.org relayuser:%s\n' % RELAY_PW)
    (config / 'postfix-sasl-password.cf').chmod(0o600)


class Server:
    def __init__(self, line, config):
        self.line = line
        self.config = config
        self.name = 'dms-info-test-%s-%s' % (line.replace('.', ''), uuid.uuid4().hex[:8])

    def exec(self, *args, check=True, data=None):
        return subprocess.run(['docker', 'exec', '-i', self.name] + list(args), input=data, capture_output=True,
                              text=True, check=check)


@pytest.fixture(scope='module', params=LINES)
def server(request, tmp_path_factory):
    line = request.param
    base = tmp_path_factory.mktemp('dms-info-%s' % line)
    srv = Server(line, base / 'config')
    dms_fixture(srv.config)
    proc = _run('docker', 'run', '-d', '--name', srv.name, '--hostname', 'mail.example.com', '--label',
                'org.dms-test.pytest=1', '--dns', '127.0.0.1', '-e', 'DMS_CONFIG_POLL=2',
                '-v', '%s:/tmp/docker-mailserver' % srv.config, IMAGES[line], check=False)
    assert proc.returncode == 0, proc.stderr
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            logs = _run('docker', 'logs', srv.name, check=False)
            if 'is up and running' in logs.stdout + logs.stderr:
                break
            assert time.monotonic() < deadline, (logs.stdout + logs.stderr)[-3000:]
            time.sleep(0.5)
        for marker in ('one', 'two'):
            srv.exec('doveadm', 'save', '-u', 'alice@example.com',
                     data='From: x@example.org\nSubject: %s\n\n%s\n' % (marker, 'x' * 3000))
        yield srv
    finally:
        _run('docker', 'rm', '-f', '-v', srv.name, check=False)


def info(tmp_path, server, **args):
    run = run_play(tmp_path, [{'dms.mailserver.dms_info': dict(config_dir=str(server.config), container=server.name,
                                                               **args)}])
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.result


def valid_lines(path):
    """DMS's _get_valid_lines_from_file: no comment, no blank line."""
    return [line for line in Path(path).read_text().splitlines() if line.strip() and not line.strip().startswith('#')]


def setup_email_list(server):
    """What listmailuser shows per account: address, the STORAGE row of doveadm quota get, the aliases."""
    virtual = Path(server.config / 'postfix-virtual.cf').read_text().splitlines()
    out = []
    for line in valid_lines(server.config / 'postfix-accounts.cf'):
        account = line.split('|')[0]
        rows = server.exec('doveadm', 'quota', 'get', '-u', account).stdout.splitlines()[1:]
        storage = [row.split() for row in rows if 'STORAGE' in row.split()][0]
        used, limit, percent = storage[storage.index('STORAGE') + 1:storage.index('STORAGE') + 4]
        pattern = re.compile(r'\s%s($|,)|,%s($|,)' % (account, account), re.I)
        aliases = [row.split()[0] for row in virtual if pattern.search(row)]
        out.append((account, int(used), None if limit == '-' else int(limit), int(percent), aliases))
    return out


def test_accounts_equal_setup_email_list_with_live_usage(tmp_path, server):
    result = info(tmp_path, server, gather=['accounts'])
    shown = [(a['address'], a['usage']['used_kib'], a['usage']['limit_kib'], a['usage']['percent'], a.get('aliases', []))
             for a in result['accounts']]
    assert shown == setup_email_list(server)
    alice, bob, jimbob = result['accounts']
    assert alice['usage']['messages'] == 2 and alice['usage']['used_kib'] > 0 and alice['usage']['limit_kib'] == 10240
    # DMS applies jimbob's 5M to bob (substring lookup): the live limit says so, and so does quota_applied.
    assert bob['quota'] == '20M' and bob['quota_applied'] == '5M' and bob['usage']['limit_kib'] == 5120
    assert bob['restrict'] == ['send'] and 'aliases' not in jimbob and 'restrict' not in alice
    assert result['sections'] == ['accounts'] and 'aliases' not in result
    text = json.dumps(result)
    assert '$6$' not in text and not any(p in text for p in PASSWORDS.values())


def test_aliases_equal_setup_alias_list(tmp_path, server):
    result = info(tmp_path, server, gather=['aliases'])
    listed = [line.split(None, 1) for line in valid_lines(server.config / 'postfix-virtual.cf')]
    assert [(a['alias'], a['recipients']) for a in result['aliases']] == \
        [(key, re.split(r'[,\s]+', rest.strip())) for key, rest in listed]
    assert not any(a['self_alias'] or a['catch_all'] for a in result['aliases'])


def test_relays_without_the_password(tmp_path, server):
    result = info(tmp_path, server, gather=['relays'])
    assert [(r['key'], r['host'], r['port'], r['exclude'], r['credentials']) for r in result['relays']] == [
        ('@example.org', 'smtp.relay.test', 587, False, True), ('@internal.example.net', None, None, True, False)]
    assert RELAY_PW not in json.dumps(result)


def test_live_version_and_change_detector(tmp_path, server):
    env = json.loads(_run('docker', 'image', 'inspect', '-f', '{{json .Config.Env}}', IMAGES[server.line]).stdout)
    release = [e.split('=', 1)[1] for e in env if e.startswith('DMS_RELEASE=')][0]
    result = info(tmp_path, server, gather=[])
    assert result['live']['dms_release'] == release
    assert result['live']['change_detector'] == dict(applied=True, pending=[])
    virtual = server.config / 'postfix-virtual.cf'
    before = virtual.read_text()
    inode = server.exec('stat', '-c', '%i', CHKSUM_FILE).stdout.strip()
    # The change detector's own lock (DMS's check-for-changes.sh.lock in the config volume) holds it after it has
    # seen the change and before it applies it, so the change is pending for as long as the test needs.
    lock = server.config / 'check-for-changes.sh.lock'
    lock.write_text('dms-info-test\n')
    try:
        virtual.write_text(before + 'new@example.com alice@example.com\n')
        result = info(tmp_path, server, gather=[])
        assert result['live']['change_detector'] == dict(applied=False, pending=['postfix-virtual.cf'])
    finally:
        lock.unlink()
    try:
        # Applied: DMS renames its new checksum file over the old one (a new inode), as the stand-in now does.
        deadline = time.monotonic() + 60
        while server.exec('stat', '-c', '%i', CHKSUM_FILE).stdout.strip() == inode:
            assert time.monotonic() < deadline, 'the change detector did not apply the change'
            time.sleep(1)
        assert info(tmp_path, server, gather=[])['live']['change_detector'] == dict(applied=True, pending=[])
    finally:
        virtual.write_text(before)


def test_a_stopped_or_unknown_container_is_refused_clearly(tmp_path, server):
    run = run_play(tmp_path, [{'dms.mailserver.dms_info': dict(config_dir=str(server.config),
                                                               container=server.name + '-nope')}])
    assert run.rc != 0 and 'is not a running container of docker' in run.result['msg']


def test_report_playbook_prints_a_row_and_writes_json_and_markdown(tmp_path, server):
    out = tmp_path / 'report'
    group = Group(tmp_path / 'group', hosts=('mx1',),
                  host_vars={'mx1': {'dms_config_dir': str(server.config), 'dms_container_name': server.name}},
                  dms_accounts=[{'address': a, 'password': p} for a, p in PASSWORDS.items()] +
                  [{'address': 'new@example.com', 'password': 'Info-New-Pw-5'}],
                  dms_aliases=[{'alias': 'info@example.com', 'recipients': ['alice@example.com', 'bob@example.com']}],
                  dms_relays=[{'domain': 'example.org', 'host': 'smtp.relay.test', 'port': 587,
                               'username': 'relayuser', 'password': RELAY_PW},
                              {'domain': 'internal.example.net', 'exclude': True}],
                  dms_dkim=[], dms_dovecot_masters=[{'name': 'admin', 'password': 'Info-Master-Pw-6'}])
    run = run_playbook(group, 'report', extra_vars={'dms_report_dir': str(out), 'dms_report_verify_passwords': True})
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    row = run.task('Print one row per host', 'mx1')['msg']
    assert row[0].split()[:4] == ['host', 'accounts', 'aliases', 'relays']
    assert row[1].split()[:6] == ['mx1', '3', '3', '2', '0', 'no']
    data = json.loads((out / 'dms-report.json').read_text())
    assert data[0]['host'] == 'mx1'
    assert data[0]['drift'] == {'accounts': 1, 'aliases': 2, 'relays': 0, 'dkim': 0, 'masters': 1}
    assert data[0]['info']['drift']['accounts']['missing'] == ['new@example.com']
    markdown = (out / 'dms-report.md').read_text()
    assert '| mx1 | 3 | 3 | 2 | 0 | no |' in markdown
    assert '- accounts missing: `new@example.com`' in markdown
    assert '- aliases extra: `virtual sales@example.com`' in markdown
    assert '- masters missing: `admin`' in markdown
    for text in (run.stdout, run.stderr, markdown, json.dumps(data)):
        assert RELAY_PW not in text and 'Info-New-Pw-5' not in text and '$6$' not in text
        assert 'Info-Master-Pw-6' not in text
        assert not any(p in text for p in PASSWORDS.values())


# -- drift after the real state modules converged (no container) ------------------------------------------

ACCOUNTS = [{'address': 'alice@example.com', 'password': 'Conv-Alice-Pw-1', 'quota': '1G', 'restrict': ['send']},
            {'address': 'bob@example.com', 'password': 'Conv-Bob-Pw-2'}]
ALIASES = [{'alias': '@example.com', 'recipients': ['alice@example.com']},
           {'alias': '/^sales-.*@example\\.com$/', 'type': 'regexp', 'recipients': ['bob@example.com']}]
RELAYS = [{'domain': 'example.com', 'host': 'smtp.relay.test', 'port': 587, 'username': 'u', 'password': 'Conv-R-Pw-3'}]
DKIM = [{'domains': ['example.com'], 'key_size': 1024}]
CONFIG = [{'file': 'postfix-main.cf', 'settings': {'message_size_limit': 20480000}}]
MASTERS = [{'name': 'admin', 'password': 'Conv-Master-Pw-4'}, {'name': 'backup', 'password': 'Conv-Master-Pw-5'}]
SIEVE = [{'address': 'alice@example.com', 'vacation': {'subject': 'Away', 'body': 'Back on Monday.', 'days': 3}},
         {'scope': 'before', 'script': 'require "fileinto";\nif header :contains "X-Spam" "yes" '
                                       '{ fileinto "Junk"; }\n'}]
FETCHES = [{'server': 'pop.old.test', 'protocol': 'pop3', 'username': 'alice', 'password': 'Conv-Fetch-Pw-6',
            'target': 'alice@example.com'},
           {'server': 'imap.old.test', 'protocol': 'imap', 'username': 'bob', 'password': 'Conv-Fetch-Pw-7',
            'target': 'bob@example.com', 'fetcher': 'getmail', 'folders': ['INBOX', 'Archive']}]


def test_no_drift_after_the_state_modules_converged_and_drift_after_a_hand_edit(tmp_path):
    config = str(tmp_path / 'config')
    tasks = [{'dms.mailserver.dms_account': {'config_dir': config, 'accounts': ACCOUNTS}},
             {'dms.mailserver.dms_alias': {'config_dir': config, 'aliases': ALIASES}},
             {'dms.mailserver.dms_relay': {'config_dir': config, 'relays': RELAYS}},
             {'dms.mailserver.dms_dkim': {'config_dir': config, 'domains': ['example.com'], 'key_size': 1024}},
             {'dms.mailserver.dms_config': dict(CONFIG[0], config_dir=config)},
             {'dms.mailserver.dms_dovecot_master': {'config_dir': config, 'masters': MASTERS}},
             {'dms.mailserver.dms_sieve': {'config_dir': config, 'scripts': SIEVE}},
             {'dms.mailserver.dms_fetchmail': {'config_dir': config, 'fetches': FETCHES}}]
    run = run_play(tmp_path, tasks)
    assert run.rc == 0, run.stdout[-3000:]
    compare = {'config_dir': config, 'verify_passwords': True,
               'compare_to': {'accounts': ACCOUNTS, 'aliases': ALIASES, 'relays': RELAYS, 'dkim': DKIM,
                              'config': CONFIG, 'masters': MASTERS, 'sieve': SIEVE, 'fetches': FETCHES}}
    run = run_play(tmp_path, [{'dms.mailserver.dms_info': compare}], name='info')
    result = run.result
    assert result['in_sync'] is True, result['drift']
    assert result['masters'] == [{'name': 'admin', 'scheme': 'SHA512-CRYPT'},
                                 {'name': 'backup', 'scheme': 'SHA512-CRYPT'}]
    assert result['sieve'] == [{'kind': 'user', 'address': 'alice@example.com', 'neutral': False},
                               {'kind': 'global', 'scope': 'before'}]
    assert [(f['fetcher'], f['server'], f['username'], f['protocol'], f['target'], f['ssl'], f['folders'],
             f['password_set']) for f in result['fetches']] == [
        ('fetchmail', 'pop.old.test', 'alice', 'pop3', 'alice@example.com', True, [], True),
        ('getmail', 'imap.old.test', 'bob', 'imap', 'bob@example.com', True, ['INBOX', 'Archive'], True)]
    for secret in ('Conv-Master-Pw-4', 'Conv-Master-Pw-5', 'Conv-Fetch-Pw-6', 'Conv-Fetch-Pw-7', '$6$'):
        assert secret not in run.stdout + run.stderr, secret
    # The catch-all made self-aliases for both accounts: marked, and not drift.
    assert [a['alias'] for a in result['aliases'] if a.get('self_alias')] == ['alice@example.com', 'bob@example.com']
    # By hand: another quota and another password for bob, a new alias, the relay gone.
    quotas = tmp_path / 'config' / 'dovecot-quotas.cf'
    quotas.write_text(quotas.read_text().replace('1G', '2G'))
    with open(str(tmp_path / 'config' / 'postfix-virtual.cf'), 'a') as handle:
        handle.write('hand@example.com alice@example.com\n')
    (tmp_path / 'config' / 'postfix-relaymap.cf').write_text('')
    (tmp_path / 'config' / 'postfix-sasl-password.cf').write_text('')
    accounts = tmp_path / 'config' / 'postfix-accounts.cf'
    lines = accounts.read_text().splitlines()
    lines[1] = 'bob@example.com|%s' % doveadm_hash('Other-Pw')
    accounts.write_text('\n'.join(lines) + '\n')
    # By hand: master "backup" gone, another hash for admin, a Sieve script for bob, alice's vacation text changed,
    # the global script removed, another fetchmail password, an extra getmail file.
    masters = tmp_path / 'config' / 'dovecot-masters.cf'
    masters.write_text('admin|%s\n' % doveadm_hash('Other-Master-Pw'))
    (tmp_path / 'config' / 'bob@example.com.dovecot.sieve').write_text('keep;\nstop;\n')
    alice = tmp_path / 'config' / 'alice@example.com.dovecot.sieve'
    alice.write_text(alice.read_text().replace('Back on Monday.', 'Back on Tuesday.'))
    (tmp_path / 'config' / 'before.dovecot.sieve').unlink()
    fetchmail = tmp_path / 'config' / 'fetchmail.cf'
    fetchmail.write_text(fetchmail.read_text().replace('Conv-Fetch-Pw-6', 'Other-Fetch-Pw'))
    (tmp_path / 'config' / 'getmail' / 'hand.cf').write_text(
        '[retriever]\ntype = SimplePOP3SSLRetriever\nserver = pop.hand.test\nusername = carol\npassword = x\n'
        '\n[destination]\ntype = MDA_external\npath = /usr/lib/dovecot/deliver\n'
        'allow_root_commands = true\narguments = ("-d","bob@example.com")\n')
    drift = run_play(tmp_path, [{'dms.mailserver.dms_info': compare}], name='info2').result['drift']
    assert drift['masters'] == {'missing': ['backup'], 'extra': [],
                                'different': [{'name': 'admin', 'fields': ['password']}]}
    assert drift['sieve'] == {'missing': [{'scope': 'before'}], 'extra': [{'address': 'bob@example.com'}],
                              'different': [{'address': 'alice@example.com', 'fields': ['script']}]}
    assert drift['fetches'] == {'missing': [], 'extra': [{'server': 'pop.hand.test', 'username': 'carol'}],
                                'different': [{'server': 'pop.old.test', 'username': 'alice',
                                               'fields': ['password']}]}
    assert drift['accounts']['different'] == [{'address': 'alice@example.com', 'fields': ['quota']},
                                              {'address': 'bob@example.com', 'fields': ['password']}]
    assert drift['aliases']['extra'] == [{'type': 'virtual', 'alias': 'hand@example.com'}]
    assert drift['relays']['missing'] == ['@example.com']
