# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailserver role on Docker: input checks (including the DMS release line and Dovecot settings), the health check
per line, and the failure report of an unhealthy container.

The full deployment (SMTP/IMAP logins, aliases, DKIM, password change without restart) is
proven by the molecule default scenario; these are the cases it does not cover.
"""
from __future__ import annotations

import imaplib
import json
import os
import smtplib
import subprocess
import time

import dkim
import pytest

from dmstest import COLLECTION_ROOT, run_play
from mailclient import HELO, new_message

# The test images stand in for DMS 16 (the default line) and DMS 15.1; hack/build-test-images.sh builds both.
IMAGE_16 = 'dms-test:16'
IMAGE_15 = 'dms-test:15.1'
# DMS's compose.yaml health check, which the role gives DMS 15.1 containers (the image has none).
COMPOSE_CHECK = ['CMD-SHELL', "ss --listening --ipv4 --tcp | grep --silent ':smtp' || exit 1"]

BASE_VARS = {'dms_hostname': 'mail.example.com', 'dms_image': IMAGE_16, 'dms_image_pull': 'never',
             'dms_bind_address': '127.0.0.1', 'dms_dns_servers': ['127.0.0.1'],
             'dms_host_ports': {25: 32525, 143: 32143, 465: 32465, 587: 32587, 993: 32993}}


def role_task(tmp_path, **overrides):
    role_vars = dict(BASE_VARS, dms_base_dir=str(tmp_path / 'dms'), dms_container_name='dms-role-test')
    role_vars.update(overrides)
    return {'name': 'role', 'ansible.builtin.include_role': {'name': 'dms.mailserver.mailserver'},
            'vars': role_vars}


@pytest.mark.parametrize('overrides,needle', [
    ({'dms_hostname': 'mail'}, 'fully-qualified'),
    ({'dms_hostname': 'mail example.com'}, 'fully-qualified'),
    ({'dms_image': 'dms-test:latest'}, 'pinned by a tag'),
    ({'dms_image': 'dms-test'}, 'pinned by a tag'),
    ({'dms_container_engine': 'lxc'}, 'dms_container_engine'),
    ({'dms_tls_type': 'manual'}, 'dms_tls_cert'),
    ({'dms_tls_type': 'manual', 'dms_tls_cert': '/c.pem', 'dms_tls_key': '/k.pem', 'dms_tls_alt_cert': '/a.pem'},
     'dms_tls_alt_key'),
    ({'dms_env': {'RELAY_PASSWORD': 'line\nbreak'}}, 'line break'),
    ({'dms_env': {'BAD-NAME': '1'}}, 'not a valid environment variable name'),
    ({'dms_image': 'dms-test:local'}, 'set dms_release_line'),
    ({'dms_image': 'dms-test:edge', 'dms_release_line': '17'}, 'dms_release_line'),
    ({'dms_image': 'docker-mailserver:14.0.0'}, 'not supported'),
    # A Dovecot 2.3 name on DMS 16 (Dovecot 2.4), and the reverse; the message gives the other version's name.
    ({'dms_dovecot_conf': {'disable_plaintext_auth': 'no'}}, 'auth_allow_cleartext'),
    ({'dms_dovecot_conf': {'ssl_cert': '</etc/dms/tls/cert.pem'}}, 'ssl_server_cert_file'),
    ({'dms_image': IMAGE_15, 'dms_dovecot_conf': {'auth_allow_cleartext': 'yes'}}, 'disable_plaintext_auth'),
    ({'dms_image': 'dms-test:local', 'dms_release_line': '15', 'dms_dovecot_conf': {'quota_storage_size': '1G'}},
     'plugin/quota_storage_size'),
    # 2.3 forms that Dovecot 2.4 parses but does not expand.
    ({'dms_dovecot_conf': {'mail_plugins': '$mail_plugins quota'}}, 'mail_plugins/<item> = yes'),
    ({'dms_dovecot_conf': {'mail_home': '/var/mail/%d/%n/home'}}, '%{user | domain}'),
    # Values DMS rejects at start (it would stop the container, or trust no network).
    ({'dms_env': {'ACCOUNT_PROVISIONER': 'OIDC'}}, 'ACCOUNT_PROVISIONER'),
    ({'dms_env': {'SSL_TYPE': 'bogus'}}, 'SSL_TYPE'),
    ({'dms_env': {'PERMIT_DOCKER': 'everyone'}}, 'PERMIT_DOCKER'),
    ({'dms_env': {'DOVECOT_INET_PROTOCOLS': 'both'}}, 'DOVECOT_INET_PROTOCOLS'),
    ({'dms_env': {'LOGROTATE_INTERVAL': 'hourly'}}, 'LOGROTATE_INTERVAL'),
])
def test_bad_input_fails_before_anything_is_done(tmp_path, overrides, needle):
    res = run_play(tmp_path, [role_task(tmp_path, **overrides)])
    assert res.rc != 0
    failed = [t for t in res.tasks if t.get('failed')]
    assert failed and needle in str(failed[-1].get('msg', failed[-1])), failed
    assert not (tmp_path / 'dms').exists()
    assert 'line\\nbreak' not in res.stdout and 'line\nbreak' not in res.stdout  # the value is never shown


def test_unknown_env_keys_are_reported(tmp_path):
    res = run_play(tmp_path, [role_task(tmp_path, dms_state='absent', dms_env={'ENABLE_POPP3': 1})])
    assert res.rc == 0
    assert any('ENABLE_POPP3' in str(t.get('msg', '')) for t in res.tasks)


def test_file_variants_of_known_env_keys_are_known(tmp_path):
    res = run_play(tmp_path, [role_task(tmp_path, dms_state='absent',
                                        dms_env={'RELAY_PASSWORD__FILE': '/run/secrets/relay', 'BOGUS__FILE': '/x'})])
    assert res.rc == 0
    warnings = [str(t.get('msg', '')) for t in res.tasks if 'does not document' in str(t.get('msg', ''))]
    assert len(warnings) == 1 and 'BOGUS' in warnings[0] and 'RELAY_PASSWORD' not in warnings[0], warnings


def test_manual_tls_mounts_the_directories_and_letsencrypt_is_writable(tmp_path):
    (tmp_path / 'certs').mkdir()
    res = run_play(tmp_path, [role_task(tmp_path, dms_manage_container=False, dms_tls_type='manual',
                                        dms_tls_cert=str(tmp_path / 'certs' / 'fullchain.pem'),
                                        dms_tls_key=str(tmp_path / 'certs' / 'privkey.pem'),
                                        dms_tls_alt_cert=str(tmp_path / 'rsa' / 'cert.pem'),
                                        dms_tls_alt_key=str(tmp_path / 'rsa' / 'key.pem'),
                                        dms_no_log=False,
                                        dms_extra_volumes=['/srv/secrets:/run/secrets:ro']),
                              {'name': 'show', 'ansible.builtin.debug': {'var': 'dms_effective_env'}}])
    assert res.rc == 0, res.stdout[-3000:]
    env = res.tasks[-1]['dms_effective_env']
    assert env['SSL_CERT_PATH'] == '/etc/dms-manual-tls/cert/fullchain.pem'
    assert env['SSL_KEY_PATH'] == '/etc/dms-manual-tls/key/privkey.pem'
    assert env['SSL_ALT_CERT_PATH'] == '/etc/dms-manual-tls/alt-cert/cert.pem'
    assert env['SSL_ALT_KEY_PATH'] == '/etc/dms-manual-tls/alt-key/key.pem'
    env_file = (tmp_path / 'dms' / 'mailserver.env').read_text()
    assert 'SSL_CERT_PATH=/etc/dms-manual-tls/cert/fullchain.pem' in env_file


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_self_signed_without_its_files_is_refused_before_the_container_starts(tmp_path):
    res = run_play(tmp_path, [role_task(tmp_path, dms_tls_type='self-signed',
                                        dms_accounts=[{'address': 'alice@example.com', 'password': 'Self-Pw-1'}])])
    assert res.rc != 0
    failed = [t for t in res.tasks if t.get('failed')][-1]
    for name in ('ssl/mail.example.com-key.pem', 'ssl/mail.example.com-cert.pem', 'ssl/demoCA/cacert.pem'):
        assert name in failed['msg'], failed['msg']
    assert subprocess.run(['docker', 'inspect', 'dms-role-test'], capture_output=True, check=False).returncode != 0


@pytest.mark.parametrize('image,reported', [(IMAGE_15, True), (IMAGE_16, False)])
def test_known_env_follows_the_release_line(tmp_path, image, reported):
    # DMS 16 added names for the Dovecot 2.4 LDAP filters; DMS 15.1 does not read them.
    res = run_play(tmp_path, [role_task(tmp_path, dms_state='absent', dms_image=image,
                                        dms_env={'DOVECOT_USERDB_LDAP_FILTER': '(uid=%{user | username})'})])
    assert res.rc == 0
    warnings = [str(t.get('msg', '')) for t in res.tasks if 'DOVECOT_USERDB_LDAP_FILTER' in str(t.get('msg', ''))]
    assert bool(warnings) == reported
    if reported:
        assert 'DMS 15 does not document' in warnings[0]


@pytest.mark.parametrize('image,settings,lines', [
    (IMAGE_16, {'auth_allow_cleartext': 'yes', 'mail_plugins/quota': 'yes'},
     ['auth_allow_cleartext = yes', 'mail_plugins/quota = yes', 'recipient_delimiter = +']),
    (IMAGE_15, {'disable_plaintext_auth': 'no', 'plugin/quota_grace': '10%%'},
     ['disable_plaintext_auth = no', 'plugin/quota_grace = 10%%', 'recipient_delimiter = +']),
])
def test_config_only_writes_the_lines_dovecot_names(tmp_path, image, settings, lines):
    res = run_play(tmp_path, [role_task(tmp_path, dms_image=image, dms_manage_container=False,
                                        dms_dovecot_conf=settings, dms_recipient_delimiter='+')])
    assert res.rc == 0, res.stdout[-3000:]
    written = (tmp_path / 'dms' / 'docker-data' / 'dms' / 'config' / 'dovecot.cf').read_text().splitlines()
    assert [line for line in written if not line.startswith('#')] == lines


def _inspect(name):
    out = subprocess.run(['docker', 'inspect', name], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def _build_images():
    subprocess.run(['bash', str(COLLECTION_ROOT / 'hack' / 'build-test-images.sh')], check=True,
                   stdout=subprocess.DEVNULL)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_dms_15_gets_the_compose_health_check(tmp_path):
    _build_images()
    assert _inspect(IMAGE_15)['Config'].get('Healthcheck') is None  # like DMS 15.1.0's image
    task = role_task(tmp_path, dms_image=IMAGE_15, dms_health_timeout=180,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Line-15-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc == 0, res.stdout[-3000:]
        container = _inspect('dms-role-test')
        check = container['Config']['Healthcheck']
        assert check['Test'] == COMPOSE_CHECK
        assert check['Timeout'] == 3 * 10 ** 9 and check['Interval'] == 5 * 10 ** 9
        assert container['State']['Health']['Status'] == 'healthy'
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_dms_16_keeps_the_images_health_check(tmp_path):
    _build_images()
    task = role_task(tmp_path, dms_health_timeout=180,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Line-16-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc == 0, res.stdout[-3000:]
        container = _inspect('dms-role-test')
        assert container['Config']['Healthcheck'] == _inspect(IMAGE_16)['Config']['Healthcheck']
        assert container['State']['Health']['Status'] == 'healthy'
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_container_without_health_check_fails(tmp_path):
    _build_images()
    # DMS 15.1's image (no HEALTHCHECK) declared as line 16: the role adds no check, so there is none to wait for.
    task = role_task(tmp_path, dms_image=IMAGE_15, dms_release_line='16', dms_health_timeout=60,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'No-Check-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'has no health check' in failed['msg']
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_no_account_is_refused_before_the_container_starts(tmp_path):
    _build_images()
    # With the FILE provisioner DMS waits 120 s for an account and then stops: refused before it starts.
    res = run_play(tmp_path, [role_task(tmp_path)])
    assert res.rc != 0
    failed = [t for t in res.tasks if t.get('failed')][-1]
    assert 'No mail account' in failed['msg'] and 'postfix-accounts.cf' in failed['msg']
    assert subprocess.run(['docker', 'inspect', 'dms-role-test'], capture_output=True, check=False).returncode != 0


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_stopped_container_fails_at_once(tmp_path):
    _build_images()
    # A start-up error the role cannot foresee (no network interface of that name): DMS stops with status 0.
    task = role_task(tmp_path, dms_health_timeout=120, dms_restart_policy='no', dms_no_log=False,
                     dms_env={'NETWORK_INTERFACE': 'nope0'},
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Stopped-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'stopped (exit code 0' in failed['msg']
        assert 'NETWORK_INTERFACE appears to be misconfigured' in failed['msg']
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_unhealthy_container_fails_with_its_last_log_lines(tmp_path):
    _build_images()
    # DMS 16's health check runs first 30 s after the start: not healthy within 10 s.
    task = role_task(tmp_path, dms_health_timeout=10, dms_no_log=False,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Slow-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'did not become healthy within 10 s' in failed['msg']
        assert 'Welcome to docker-mailserver' in failed['msg']
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_healthy_container_whose_dovecot_never_answers_fails(tmp_path):
    _build_images()
    # Dovecot rejects the value and restarts in a loop; DMS 15.1's health check (port 25 listens) passes and the
    # start-up logs that DMS is up, but IMAP never answers. dms_config refuses the value (doveconf), so the file is
    # written by hand, as a user could; the role keeps lines it does not manage.
    config = tmp_path / 'dms' / 'docker-data' / 'dms' / 'config'
    config.mkdir(parents=True)
    (config / 'dovecot.cf').write_text('mail_max_userip_connections = lots\n')
    task = role_task(tmp_path, dms_image=IMAGE_15, dms_health_timeout=40, dms_no_log=False,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Loop-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'IMAP did not answer within 40 s' in failed['msg'], failed['msg']
        assert 'exited: dovecot (exit status 89' in failed['msg']   # the loop, in the last log lines
        assert _inspect('dms-role-test')['State']['Health']['Status'] == 'healthy'
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_rspamd_signs_with_the_key_the_role_made_and_a_new_key_gets_rspamds_owner(tmp_path):
    """ENABLE_RSPAMD=1 with ENABLE_OPENDKIM=0: the keys go to Rspamd (as DMS's setup config dkim does), Rspamd
    signs an authenticated message, and the signature verifies against the record the role returned. A key added
    while the container runs belongs to the image's _rspamd user (DMS gives rspamd/dkim to it only at start), and
    no recreate happens."""
    _build_images()
    env = {'ENABLE_RSPAMD': 1, 'ENABLE_OPENDKIM': 0}
    alice = ('alice@example.com', 'Rspamd-Alice-Pw-1')
    base = dict(dms_env=env, dms_accounts=[{'address': alice[0], 'password': alice[1]}],
                dms_dkim=[{'domain': 'example.com'}], dms_no_log=False)
    show = {'name': 'records', 'ansible.builtin.debug': {'var': 'dms_dkim_records'}}
    dns = 'dms-role-test-dns'
    try:
        # The key first (config-only, as before a first deployment), so the test's DNS server can publish it:
        # Rspamd signs only when the published key matches (check_pubkey).
        res = run_play(tmp_path, [role_task(tmp_path, dms_manage_container=False, **base), show])
        assert res.rc == 0, res.stdout[-3000:]
        record = res.tasks[-1]['dms_dkim_records'][0]
        assert record['backend'] == 'rspamd', record
        value = record['value']
        subprocess.run(['docker', 'rm', '-f', dns], capture_output=True, check=False)
        chunks = ','.join(value[i:i + 255] for i in range(0, len(value), 255))
        subprocess.run(['docker', 'run', '-d', '--name', dns, 'dms-test-dns:local', '--local=/example.com/',
                        '--txt-record=%s,%s' % (record['name'], chunks)], check=True, capture_output=True)
        dns_ip = _inspect(dns)['NetworkSettings']['IPAddress']

        res = run_play(tmp_path, [role_task(tmp_path, dms_dns_servers=[dns_ip], dms_health_timeout=180, **base)])
        assert res.rc == 0, res.stdout[-3000:]
        msg, marker = new_message(alice[0], alice[0], 'role-rspamd')
        deadline = time.monotonic() + 60
        while True:   # Rspamd loads its configuration for a while after DMS is up
            try:
                with smtplib.SMTP('127.0.0.1', BASE_VARS['dms_host_ports'][587], timeout=30,
                                  local_hostname=HELO) as smtp:
                    smtp.ehlo()
                    smtp.login(*alice)
                    smtp.send_message(msg)
                raw = _imap_wait(alice, marker)
                if b'DKIM-Signature:' in raw:
                    break
            except (OSError, smtplib.SMTPException):
                pass
            assert time.monotonic() < deadline, 'no DKIM-signed message within 60 s'
            msg, marker = new_message(alice[0], alice[0], 'role-rspamd')
            time.sleep(3)
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: value.encode()
                           if name.decode().rstrip('.') == record['name'] else None)

        started = _inspect('dms-role-test')['State']['StartedAt']
        base['dms_dkim'] = [{'domain': 'example.com'}, {'domain': 'example.org'}]
        res = run_play(tmp_path, [role_task(tmp_path, dms_dns_servers=[dns_ip], **base)])
        assert res.rc == 0, res.stdout[-3000:]
        assert _inspect('dms-role-test')['State']['StartedAt'] == started
        ids = subprocess.run(['docker', 'run', '--rm', '--entrypoint', 'id', IMAGE_16, '_rspamd'],
                             capture_output=True, text=True, check=True).stdout
        keys = tmp_path / 'dms' / 'docker-data' / 'dms' / 'config' / 'rspamd' / 'dkim'
        key = next(keys.glob('*example.org*private*'))
        assert 'uid=%d(' % key.stat().st_uid in ids and 'gid=%d(' % key.stat().st_gid in ids, ids
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test', dns], check=False, capture_output=True)


def _imap_wait(user, marker, timeout=30):
    """The message whose Subject carries marker, over IMAP on 143 without TLS (SSL_TYPE is empty here)."""
    deadline = time.monotonic() + timeout
    while True:
        imap = imaplib.IMAP4('127.0.0.1', BASE_VARS['dms_host_ports'][143], timeout=15)
        try:
            imap.login(*user)
            imap.select('INBOX', readonly=True)
            ids = imap.search(None, 'SUBJECT', '"%s"' % marker)[1][0].split()
            if ids:
                return next(part[1] for part in imap.fetch(ids[-1], '(BODY.PEEK[])')[1] if isinstance(part, tuple))
        finally:
            imap.logout()
        assert time.monotonic() < deadline, 'no message %s' % marker
        time.sleep(1)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_restriction_tables_are_applied_with_a_reload_when_the_container_has_their_hooks(tmp_path):
    """DMS hooks a restriction table into Postfix only when the container is created with the table present. The
    first restriction on a host needs a new container; later changes of the table only a `postfix reload`."""
    _build_images()
    bob = {'address': 'bob@example.com', 'password': 'Restrict-Bob-Pw-2'}
    alice = {'address': 'alice@example.com', 'password': 'Restrict-Alice-Pw-1'}

    def converge(bob_restrict, alice_restrict):
        accounts = [dict(alice, restrict=alice_restrict), dict(bob, restrict=bob_restrict)]
        res = run_play(tmp_path, [role_task(tmp_path, dms_accounts=accounts, dms_health_timeout=180)])
        assert res.rc == 0, res.stdout[-3000:]
        return _inspect('dms-role-test')['State']['StartedAt']

    def hooks():
        return subprocess.run(['docker', 'exec', 'dms-role-test', 'postconf', '-h', 'smtpd_recipient_restrictions'],
                              capture_output=True, text=True, check=True).stdout

    try:
        first = converge([], [])
        assert 'postfix-receive-access.cf' not in hooks()
        # Check mode predicts the new container the first receive restriction needs (its table is not written yet).
        accounts = [dict(alice, restrict=[]), dict(bob, restrict=['receive'])]
        check = run_play(tmp_path, [role_task(tmp_path, dms_accounts=accounts, dms_no_log=False)], check=True,
                         name='check')
        assert check.rc == 0, check.stdout[-3000:]
        assert any(t.get('changed') and 'container' in t for t in check.tasks), check.tasks
        # The first receive restriction: the table is new, the running container has no hook for it.
        second = converge(['receive'], [])
        assert second != first, 'a table DMS has no hook for needs a new container'
        assert 'postfix-receive-access.cf' in hooks()
        # Now the container has the hook: moving the restriction to alice is a reload, not a new container.
        third = converge([], ['receive'])
        assert third == second, 'the container was recreated for a table it already has the hook of'
        with smtplib.SMTP('127.0.0.1', BASE_VARS['dms_host_ports'][25], timeout=60, local_hostname=HELO) as smtp:
            smtp.ehlo()
            smtp.mail('bob@example.com')
            code, text = smtp.rcpt('alice@example.com')
            assert code == 554 and b'Recipient address rejected' in text, (code, text)
            smtp.rset()
            smtp.mail('alice@example.com')
            assert smtp.rcpt('bob@example.com')[0] == 250
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)
