# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of the stand-in images (tests/dms-image), one run per DMS release line.

The images stand in for docker-mailserver (DMS) 15.1 and 16 in the collection's tests, and must be at least as
strict as DMS wherever the collection's behaviour depends on it. Each test here backs a row of the table in
tests/dms-image/README.md: it fails if the stand-in were kinder than DMS (a health check DMS 15.1 lacks, a sender
DMS refuses, a Dovecot setting DMS 16 rejects, a TLS file DMS requires, ...).

For each line the module starts its containers at once: one fully configured server and several small ones for
the start-up failures, TLS modes and Rspamd. Traffic goes only to the containers' own addresses on the Docker
bridge; their DNS server is a dnsmasq container of the test (tests/dns-image) that knows only the test's names.
The image names come from DMS_TEST_IMAGE_15 and DMS_TEST_IMAGE_16 (default: the stand-ins), so the same tests run
against DMS's own images where they can be pulled. Needs root (debootstrap, dockerd).
"""
from __future__ import annotations

import base64
import imaplib
import json
import os
import shutil
import smtplib
import subprocess
import time
import uuid
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mailclient import new_message, served_serial as _served_serial, self_signed, tls_context

REPO_ROOT = Path(__file__).resolve().parents[2]
LINES = ('15.1', '16')
IMAGES = {line: os.environ.get('DMS_TEST_IMAGE_%s' % line.split('.', maxsplit=1)[0]) or 'dms-test:%s' % line
          for line in LINES}
DNS_IMAGE = 'dms-test-dns:local'
HOSTNAME = 'mail.example.com'
DOMAIN = 'example.com'
HELO = 'client.outside.test'
ALICE = ('alice@example.com', 'Alice-Image-Pw-1')
BOB = ('bob@example.com', 'Bob-Image-Pw-2')
READY_TIMEOUT = 90
CHANGE_TIMEOUT = 20
POLL = 1

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: builds the images and may start dockerd')


# --------------------------------------------------------------------------------------------------------------
# Helpers

def _run(*args, check=True, **kwargs):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)


def _hash(password):
    return _run('doveadm', 'pw', '-s', 'SHA512-CRYPT', '-p', password).stdout.strip()


def _wait(predicate, timeout, what, box=None):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail('%s within %s s%s' % (what, timeout, box.diagnostics() if box else ''))
        time.sleep(0.5)


class Box:
    """One test container of the module."""

    def __init__(self, name, config):
        self.name = name
        self.config = config

    def remove(self):
        _run('docker', 'rm', '-f', '-v', self.name, check=False)

    def inspect(self, template):
        return _run('docker', 'inspect', '-f', template, self.name, check=False).stdout.strip()

    @property
    def ip(self):
        return self.inspect('{{.NetworkSettings.IPAddress}}')

    def exec(self, *args, check=True):
        return _run('docker', 'exec', self.name, *args, check=check)

    def logs(self):
        proc = _run('docker', 'logs', self.name, check=False)
        return proc.stdout + proc.stderr

    def diagnostics(self):
        return '\n--- docker logs %s ---\n%s' % (self.name, '\n'.join(self.logs().splitlines()[-40:]))

    def wait_ready(self):
        """Until DMS's ready line is logged; fails when the container stops first."""
        def ready():
            if 'is up and running' in self.logs():
                return True
            if self.inspect('{{.State.Running}}') != 'true':
                pytest.fail('%s stopped before it was ready%s' % (self.name, self.diagnostics()))
            return False
        _wait(ready, READY_TIMEOUT, '%s not ready' % self.name, self)
        return self

    def wait_exit(self, timeout=READY_TIMEOUT):
        _wait(lambda: self.inspect('{{.State.Running}}') == 'false', timeout, '%s still running' % self.name, self)
        return int(self.inspect('{{.State.ExitCode}}'))

    # clients
    def smtp25(self, helo=HELO):
        smtp = smtplib.SMTP(self.ip, 25, timeout=30, local_hostname=helo)
        smtp.ehlo()
        return smtp

    def imap(self, user, password, port=993):
        if port == 993:
            imap = imaplib.IMAP4_SSL(self.ip, 993, ssl_context=tls_context(), timeout=15)
        else:
            imap = imaplib.IMAP4(self.ip, port, timeout=15)
        try:
            imap.login(user, password)
        except Exception:
            imap.shutdown()
            raise
        return imap

    def can_login(self, user, password):
        try:
            self.imap(user, password).logout()
        except imaplib.IMAP4.error:
            return False
        return True

    def submit(self, user, password, msg, tls=True):
        with smtplib.SMTP(self.ip, 587, timeout=30, local_hostname=HELO) as smtp:
            smtp.ehlo()
            if tls:
                smtp.starttls(context=tls_context())
                smtp.ehlo()
            # AUTH PLAIN once: smtplib's login() retries a refused password with LOGIN (a second
            # failure and penalty), and its auth() takes a 503 for a success.
            smtp.user, smtp.password = user, password
            code, text = smtp.auth('PLAIN', smtp.auth_plain)
            assert code == 235, (code, text)
            smtp.send_message(msg)

    def wait_for_message(self, user, password, marker, port=993):
        def fetch():
            imap = self.imap(user, password, port)
            try:
                imap.select('INBOX', readonly=True)
                dummy, data = imap.search(None, 'HEADER', 'Subject', marker)
                ids = data[0].split()
                if ids:
                    dummy, msg = imap.fetch(ids[-1], '(BODY.PEEK[])')
                    return next(part[1] for part in msg if isinstance(part, tuple))
            finally:
                imap.logout()
            return None
        return _wait(fetch, 30, 'no message %s for %s' % (marker, user), self)


def _opendkim_files(config):
    keys = config / 'opendkim' / 'keys' / DOMAIN
    keys.mkdir(parents=True)
    _run('opendkim-genkey', '--bits=2048', '--domain=%s' % DOMAIN, '--selector=mail', '--directory=%s' % keys)
    (config / 'opendkim' / 'KeyTable').write_text(
        'mail._domainkey.%s %s:mail:/etc/opendkim/keys/%s/mail.private\n' % (DOMAIN, DOMAIN, DOMAIN))
    (config / 'opendkim' / 'SigningTable').write_text('*@%s mail._domainkey.%s\n' % (DOMAIN, DOMAIN))
    (config / 'opendkim' / 'TrustedHosts').write_text('127.0.0.1\nlocalhost\n')


def _rspamd_key(config, key_dir=None):
    """An RSA key for Rspamd, root-owned 0600 (DMS gives rspamd/dkim/ to _rspamd at start), and
    dkim_signing.conf as dms_dkim writes it. Returns the DNS record's value."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_dir = key_dir or config / 'rspamd' / 'dkim'
    key_dir.mkdir(parents=True, exist_ok=True)
    path = key_dir / ('rsa-2048-mail-%s.private.txt' % DOMAIN)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chown(str(path), 0, 0)
    path.chmod(0o600)
    container_path = '/tmp/docker-mailserver/' + str(path.relative_to(config))
    (config / 'rspamd' / 'override.d').mkdir(parents=True, exist_ok=True)
    (config / 'rspamd' / 'override.d' / 'dkim_signing.conf').write_text(
        'enabled = true;\nsign_authenticated = true;\nsign_local = false;\ntry_fallback = false;\n'
        'use_domain = "header";\nuse_redis = false;\nuse_esld = true;\nallow_username_mismatch = true;\n'
        'check_pubkey = true;\ndomain {\n  %s {\n    path = "%s";\n    selector = "mail";\n  }\n}\n'
        % (DOMAIN, container_path))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return 'v=DKIM1; k=rsa; p=%s' % base64.b64encode(der).decode()


def _signature_verifies(raw, record):
    def dnsfunc(name, timeout=5):
        return record.encode() if name.decode().rstrip('.') == 'mail._domainkey.%s' % DOMAIN else None
    return dkim.verify(raw, dnsfunc=dnsfunc)


# --------------------------------------------------------------------------------------------------------------
# Fixtures: the images, the DNS server and every container of one release line, started at once

@pytest.fixture(scope='module')
def images():
    """The stand-ins (unless DMS_TEST_IMAGE_15 / _16 name other images, e.g. DMS's own) and the DNS server."""
    wanted = [line for line in LINES if not os.environ.get('DMS_TEST_IMAGE_%s' % line.split('.', maxsplit=1)[0])]
    subprocess.run(['bash', str(REPO_ROOT / 'hack' / 'build-test-images.sh')] + wanted + ['dns'], check=True,
                   stdout=subprocess.DEVNULL)
    return IMAGES


class Line:
    """The containers of one release line and what the tests need to know about them."""

    def __init__(self, line, image, base):
        self.line, self.image, self.base = line, image, base
        self.is16 = line.startswith('16')
        self.boxes = {}
        self.run_id = uuid.uuid4().hex[:8]

    def config(self, name, accounts=(ALICE,)):
        config = self.base / name / 'config'
        config.mkdir(parents=True)
        config.chmod(0o755)
        (config / 'postfix-accounts.cf').write_text(''.join('%s|%s\n' % (u, _hash(p)) for u, p in accounts))
        return config

    def start(self, name, config, env=None, volumes=(), dns=None):
        cname = 'dms-image-test-%s-%s-%s' % (self.line.replace('.', ''), name, self.run_id)
        args = ['docker', 'run', '-d', '--name', cname, '--hostname', HOSTNAME, '--label', 'org.dms-test.pytest=1',
                '-v', '%s:/tmp/docker-mailserver' % config]
        args += ['--dns', dns or '127.0.0.1']
        for key, value in dict({'DMS_CONFIG_POLL': str(POLL)}, **(env or {})).items():
            args += ['-e', '%s=%s' % (key, value)]
        for volume in volumes:
            args += ['-v', volume]
        proc = _run(*args, self.image, check=False)
        assert proc.returncode == 0, proc.stderr
        box = Box(cname, config)
        self.boxes[name] = box
        return box

    def remove(self):
        for box in self.boxes.values():
            box.remove()


@pytest.fixture(scope='module', params=LINES)
def line(request, images, tmp_path_factory):
    lab = Line(request.param, images[request.param], tmp_path_factory.mktemp('dms-image-%s' % request.param))
    dns_name = 'dms-image-test-dns-%s' % lab.run_id
    try:
        # The main server: manual TLS, OpenDKIM, quotas (one found by DMS's substring lookup), overrides.
        cfg = lab.config('main', accounts=(ALICE, BOB))
        (cfg / 'postfix-virtual.cf').write_text('info@%s %s\n' % (DOMAIN, ALICE[0]))
        (cfg / 'dovecot-quotas.cf').write_text('alice@example.com:10M\njimbob@example.com:5M\nbob@example.com:20M\n')
        _opendkim_files(cfg)
        (cfg / 'postfix-main.cf').write_text(
            'message_size_limit = 10000000\ndms_test_unused = 1\nmessage_size_limit = 20480000\n')
        (cfg / 'postfix-master.cf').write_text('submission/inet/smtpd_reject_unlisted_recipient=yes\n')
        (cfg / 'dovecot.cf').write_text(
            'ssl_server_prefer_ciphers = client\n' if lab.is16 else 'ssl_prefer_server_ciphers = no\n')
        lab.tls_dir = lab.base / 'main' / 'tls'
        lab.key, lab.cert, lab.serial = self_signed(lab.tls_dir, 'first', HOSTNAME)
        tls_env = {'SSL_TYPE': 'manual', 'SSL_KEY_PATH': '/tls/first-key.pem', 'SSL_CERT_PATH': '/tls/first-cert.pem'}

        # Rspamd signing (OpenDKIM off), without TLS (SSL_TYPE empty): the DNS server publishes its key.
        rspamd_cfg = lab.config('rspamd')
        lab.rspamd_record = _rspamd_key(rspamd_cfg)
        # A key Rspamd cannot read: outside rspamd/dkim, root-owned 0600.
        unreadable_cfg = lab.config('rspamd-unreadable')
        _rspamd_key(unreadable_cfg, key_dir=unreadable_cfg / 'keys')

        chunks = [lab.rspamd_record[i:i + 255] for i in range(0, len(lab.rspamd_record), 255)]
        _run('docker', 'run', '-d', '--name', dns_name, '--label', 'org.dms-test.pytest=1', DNS_IMAGE,
             '--local=/test/', '--local=/%s/' % DOMAIN,
             '--address=/outside.test/192.0.2.25', '--mx-host=outside.test,outside.test',
             '--address=/spf-fail.test/192.0.2.26', '--mx-host=spf-fail.test,spf-fail.test',
             # dnsmasq keeps quotes literally: the strings go bare, one per comma-separated piece.
             '--txt-record=spf-fail.test,v=spf1 -all',
             '--txt-record=mail._domainkey.%s,%s' % (DOMAIN, ','.join(chunks)))
        lab.dns = _run('docker', 'inspect', '-f', '{{.NetworkSettings.IPAddress}}', dns_name).stdout.strip()

        lab.start('main', cfg, dict(tls_env, ENABLE_OPENDKIM='1'), volumes=['%s:/tls:ro' % lab.tls_dir], dns=lab.dns)
        lab.start('rspamd', rspamd_cfg, {'ENABLE_RSPAMD': '1', 'ENABLE_OPENDKIM': '0'}, dns=lab.dns)
        lab.start('rspamd-unreadable', unreadable_cfg, {'ENABLE_RSPAMD': '1', 'ENABLE_OPENDKIM': '0'}, dns=lab.dns)
        # Dovecot settings of the other release line.
        wrong = lab.config('wrong-dovecot')
        (wrong / 'dovecot.cf').write_text(
            'disable_plaintext_auth = yes\n' if lab.is16 else 'auth_allow_cleartext = no\n')
        lab.start('wrong-dovecot', wrong, tls_env, volumes=['%s:/tls:ro' % lab.tls_dir])
        # Fatal start-up errors: they stop the container with exit status 0, as a DMS panic does.
        lab.start('bad-ssl-type', lab.config('bad-ssl-type'), {'SSL_TYPE': 'bogus'})
        lab.start('self-signed-missing', lab.config('self-signed-missing'), {'SSL_TYPE': 'self-signed'})
        lab.start('no-account', lab.config('no-account', accounts=()), {'DMS_TEST_ACCOUNT_WAIT': '12'})
        lab.start('oidc', lab.config('oidc'), {'ACCOUNT_PROVISIONER': 'OIDC'})
        # letsencrypt: a certbot live/ layout (symlinks into archive/), a Traefik acme.json mounted writable, and
        # the same mounted read-only (DMS writes the extracted files under live/, so that must fail).
        le = lab.base / 'letsencrypt-certbot'
        key, cert, lab.certbot_serial = self_signed(le / 'archive' / HOSTNAME, 'x', HOSTNAME)
        (le / 'live' / HOSTNAME).mkdir(parents=True)
        (le / 'live' / HOSTNAME / 'fullchain.pem').symlink_to('../../archive/%s/x-cert.pem' % HOSTNAME)
        (le / 'live' / HOSTNAME / 'privkey.pem').symlink_to('../../archive/%s/x-key.pem' % HOSTNAME)
        lab.start('le-certbot', lab.config('le-certbot'), {'SSL_TYPE': 'letsencrypt'},
                  volumes=['%s:/etc/letsencrypt' % le])
        acme = lab.base / 'letsencrypt-acme'
        key, cert, lab.acme_serial = self_signed(lab.base / 'acme-src', 'acme', HOSTNAME)
        acme.mkdir()
        (acme / 'acme.json').write_text(json.dumps({'letsencrypt': {'Certificates': [{
            'domain': {'main': 'example.com', 'sans': [HOSTNAME]},
            'certificate': base64.b64encode(cert.read_bytes()).decode(),
            'key': base64.b64encode(key.read_bytes()).decode()}]}}))
        acme_ro = lab.base / 'letsencrypt-acme-ro'
        shutil.copytree(str(acme), str(acme_ro))
        lab.start('le-acme', lab.config('le-acme'), {'SSL_TYPE': 'letsencrypt'},
                  volumes=['%s:/etc/letsencrypt' % acme])
        lab.start('le-acme-ro', lab.config('le-acme-ro'), {'SSL_TYPE': 'letsencrypt'},
                  volumes=['%s:/etc/letsencrypt:ro' % acme_ro])
        yield lab
    finally:
        lab.remove()
        _run('docker', 'rm', '-f', dns_name, check=False)


@pytest.fixture(scope='module')
def main(line):
    return line.boxes['main'].wait_ready()


# --------------------------------------------------------------------------------------------------------------
# Image and start-up

def test_health_check_is_the_release_lines(line, main):
    health = json.loads(_run('docker', 'image', 'inspect', '-f', '{{json .Config.Healthcheck}}', line.image).stdout)
    if not line.is16:
        # DMS 15.1.0 defines no HEALTHCHECK in its image (only in its compose file).
        assert health is None
        assert main.exec('test', '-e', '/usr/local/bin/dms-healthcheck', check=False).returncode != 0
        return
    assert health['Test'] == ['CMD', '/usr/local/bin/dms-healthcheck']
    assert health.get('Interval', 0) == 0  # Docker's default, 30 s, as DMS 16
    assert main.exec('dms-healthcheck', check=False).returncode == 0
    # Unhealthy as soon as one expected program is not RUNNING.
    main.exec('supervisorctl', 'stop', 'cron')
    try:
        assert main.exec('dms-healthcheck', check=False).returncode == 1
    finally:
        main.exec('supervisorctl', 'start', 'cron')
    assert main.exec('dms-healthcheck', check=False).returncode == 0


def test_ready_line_comes_after_the_daemons_started(main):
    logs = main.logs()
    assert 'Welcome to docker-mailserver' in logs
    status = main.exec('supervisorctl', 'status', check=False).stdout
    for program in ('cron', 'rsyslog', 'dovecot', 'opendkim', 'postfix', 'changedetector'):
        assert any(row.split()[:2] == [program, 'RUNNING'] for row in status.splitlines()), status


@pytest.mark.parametrize('name,message', [
    ('bad-ssl-type', 'Invalid value for SSL_TYPE!'),
    ('oidc', 'Failed to start OIDC user account provisioning - it is not yet implemented!'),
])
def test_fatal_error_stops_the_container_with_status_0(line, name, message):
    box = line.boxes[name]
    status = box.wait_exit()
    assert status == 0, 'exit status %s%s' % (status, box.diagnostics())
    logs = box.logs()
    assert message in logs and logs.count('Shutting down') == 1, logs[-3000:]
    assert 'is up and running' not in logs


def test_self_signed_without_its_files_stops_with_the_missing_files_named(line):
    box = line.boxes['self-signed-missing']
    assert box.wait_exit() == 0
    logs = box.logs()
    key = '/tmp/docker-mailserver/ssl/%s-key.pem' % HOSTNAME
    assert 'TLS Setup [SSL_TYPE=self-signed]' in logs and key in logs
    assert '/tmp/docker-mailserver/ssl/demoCA/cacert.pem' in logs
    if line.is16:
        assert 'Missing expected file(s)' in logs
    else:
        assert 'does not exist!' in logs


def test_no_account_waits_then_shuts_down(line):
    box = line.boxes['no-account']
    assert box.wait_exit(timeout=60) == 0
    logs = box.logs()
    assert 'You need at least one mail account to start Dovecot (12s left' in logs
    assert 'Failed to start accounts provisioning because no accounts were provided' in logs


# --------------------------------------------------------------------------------------------------------------
# Postfix as DMS ships it

def test_port_25_accepts_only_resolvable_senders_and_checks_spf(line, main):
    with main.smtp25() as smtp:
        assert smtp.mail('tester@outside.test')[0] == 250
        assert smtp.rcpt(ALICE[0])[0] == 250
        smtp.rset()
        smtp.mail('tester@nowhere.test')
        code, text = smtp.rcpt(ALICE[0])
        assert code == 450 and b'4.1.8' in text and b'Domain not found' in text
        smtp.rset()
        smtp.mail('tester@spf-fail.test')
        code, text = smtp.rcpt(ALICE[0])
        assert code == 550 and b'SPF fail' in text
        smtp.rset()
        # Loopback and the Docker network are not trusted (PERMIT_DOCKER=none): no relaying.
        smtp.mail('tester@outside.test')
        code, text = smtp.rcpt('someone@elsewhere.test')
        assert code == 554 and b'Relay access denied' in text
    assert main.exec('postconf', '-h', 'mynetworks').stdout.strip() == ''


def test_port_25_refuses_a_helo_name_that_is_not_fully_qualified(main):
    with main.smtp25(helo='client') as smtp:
        smtp.mail('tester@outside.test')
        code, text = smtp.rcpt(ALICE[0])
        assert code == 504 and b'need fully-qualified hostname' in text


def test_mail_from_outside_arrives_through_an_alias(main):
    msg, marker = new_message('tester@outside.test', 'info@%s' % DOMAIN, 'image')
    with main.smtp25() as smtp:
        smtp.send_message(msg)
    raw = main.wait_for_message(*ALICE, marker)
    assert b'Received-SPF:' in raw  # policyd-spf looked at it


def test_submission_needs_auth_and_is_signed_by_opendkim(main):
    msg, marker = new_message(ALICE[0], BOB[0], 'opendkim')
    main.submit(*ALICE, msg)
    raw = main.wait_for_message(*BOB, marker)
    assert b'DKIM-Signature:' in raw and b'd=example.com' in raw
    with smtplib.SMTP(main.ip, 587, timeout=30, local_hostname=HELO) as smtp:
        smtp.starttls(context=tls_context())
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail(ALICE[0], [BOB[0]], msg.as_bytes())


# --------------------------------------------------------------------------------------------------------------
# Dovecot, quotas and overrides

def test_quota_fields_of_the_release_line_and_dms_substring_lookup(line, main):
    userdb = main.exec('cat', '/etc/dovecot/userdb').stdout
    alice = [row for row in userdb.splitlines() if row.startswith(ALICE[0] + ':')][0]
    bob = [row for row in userdb.splitlines() if row.startswith(BOB[0] + ':')][0]
    if line.is16:
        assert alice.endswith('userdb_quota_storage_size=10M userdb_quota_storage_grace=1M')
        # DMS finds "bob@example.com:" inside jimbob's line first.
        assert bob.endswith('userdb_quota_storage_size=5M userdb_quota_storage_grace=0M')
    else:
        assert alice.endswith('userdb_quota_rule=*:bytes=10M')
        assert bob.endswith('userdb_quota_rule=*:bytes=5M')
    out = main.exec('doveadm', 'quota', 'get', '-u', ALICE[0]).stdout
    storage = [row.split() for row in out.splitlines() if 'STORAGE' in row][0]
    assert storage[-2] == '10240', out
    assert 'check_policy_service inet:localhost:65265' in main.exec('postconf', '-h',
                                                                    'smtpd_recipient_restrictions').stdout


def test_overrides_are_applied_at_first_start_as_dms_applies_them(line, main):
    # postfix-main.cf: appended, then postconf -n: the last definition wins, unused parameters are dropped.
    assert main.exec('postconf', '-h', 'message_size_limit').stdout.strip() == '20480000'
    assert 'dms_test_unused' not in main.exec('postconf', '-n').stdout
    assert main.exec('postconf', '-P', 'submission/inet/smtpd_reject_unlisted_recipient').stdout.strip() \
        == 'submission/inet/smtpd_reject_unlisted_recipient = yes'
    if line.is16:
        assert main.exec('doveconf', '-h', 'ssl_server_prefer_ciphers').stdout.strip() == 'client'
    else:
        assert main.exec('doveconf', '-h', 'ssl_prefer_server_ciphers').stdout.strip() == 'no'


def test_dovecot_setting_of_the_other_line_breaks_dovecot_but_not_the_start(line):
    box = line.boxes['wrong-dovecot'].wait_ready()
    setting = 'disable_plaintext_auth' if line.is16 else 'auth_allow_cleartext'
    # Like DMS: the start-up goes on, and supervisord restarts the failing Dovecot for ever.
    out = box.exec('doveconf', '-n', check=False)
    assert out.returncode != 0 and setting in out.stderr
    log = _wait(lambda: box.exec('cat', '/var/log/supervisor/supervisord.log').stdout.count('exited: dovecot')
                >= 3, 30, 'dovecot was not restarted again and again', box)
    assert log
    with pytest.raises(OSError):
        box.imap(*ALICE)
    assert box.inspect('{{.State.Running}}') == 'true'
    box.remove()  # supervisord restarts Dovecot every second: stop the loop


# --------------------------------------------------------------------------------------------------------------
# Change detector

def test_change_detector_applies_a_new_account_and_honours_its_lock(line, main):
    carol = ('carol@example.com', 'Carol-Image-Pw-3')

    def in_userdb(login):
        return any(row.startswith(login + ':') for row in main.exec('cat', '/etc/dovecot/userdb').stdout.splitlines())

    lock = main.config / 'check-for-changes.sh.lock'
    lock.write_text('another-writer\n')
    with (main.config / 'postfix-accounts.cf').open('a') as handle:
        handle.write('%s|%s\n' % (carol[0], _hash(carol[1])))
    time.sleep(POLL * 4 + 2)
    assert not in_userdb(carol[0]), 'the change was applied while another holder had the lock'
    assert "Lock file '/tmp/docker-mailserver/check-for-changes.sh.lock' exists" in main.logs()
    lock.unlink()
    _wait(lambda: in_userdb(carol[0]), CHANGE_TIMEOUT, 'carol was not added', main)
    # The login works once Dovecot has the new file: the detector reloads it after the rebuild.
    _wait(lambda: main.can_login(*carol), CHANGE_TIMEOUT, 'carol cannot log in', main)
    # The detector releases its lock only after the reloads that follow the userdb rebuild.
    _wait(lambda: not lock.exists(), CHANGE_TIMEOUT, 'the detector kept its lock after applying the change', main)

    # A lock older than a minute is stale: removed, and the change applied.
    dave = ('dave@example.com', 'Dave-Image-Pw-4')
    lock.write_text('crashed-writer\n')
    old = time.time() - 120
    os.utime(str(lock), (old, old))
    with (main.config / 'postfix-accounts.cf').open('a') as handle:
        handle.write('%s|%s\n' % (dave[0], _hash(dave[1])))
    _wait(lambda: in_userdb(dave[0]), CHANGE_TIMEOUT, 'dave was not added', main)
    _wait(lambda: main.can_login(*dave), CHANGE_TIMEOUT, 'dave cannot log in', main)
    assert 'removing stale lock file' in main.logs()
    assert main.inspect('{{.RestartCount}}') == '0'


def test_change_detector_rebuilds_per_file_and_ignores_a_removed_file(main):
    """As DMS's check-for-changes.sh: only new or changed files count (a removed one is not rebuilt from), and
    each derived file is rebuilt only from the files it comes from (postfix-regexp.cf does not rebuild userdb)."""
    chksum = '/tmp/docker-mailserver-config-chksum'
    regexp = main.config / 'postfix-regexp.cf'
    main.exec('sh', '-c', 'echo "# dms-test marker" >> /etc/dovecot/userdb')
    regexp.write_text('/^sales-.*@example\\.com$/ %s\n' % ALICE[0])
    _wait(lambda: 'sales-' in main.exec('cat', '/etc/postfix/regexp').stdout, CHANGE_TIMEOUT,
          'the new postfix-regexp.cf was not applied', main)
    _wait(lambda: '/tmp/docker-mailserver/postfix-regexp.cf' in main.exec('cat', chksum).stdout, CHANGE_TIMEOUT,
          'the change detector did not finish', main)
    assert '# dms-test marker' in main.exec('cat', '/etc/dovecot/userdb').stdout, \
        'a change of postfix-regexp.cf rebuilt the accounts (DMS does not)'
    regexp.unlink()
    _wait(lambda: '/tmp/docker-mailserver/postfix-regexp.cf' not in main.exec('cat', chksum).stdout,
          CHANGE_TIMEOUT, 'the change detector did not see the removal', main)
    assert 'sales-' in main.exec('cat', '/etc/postfix/regexp').stdout, \
        'the removed postfix-regexp.cf was applied (DMS acts only on new or changed files)'
    assert main.inspect('{{.RestartCount}}') == '0'


def test_files_read_only_at_start_are_not_applied_live(main):
    (main.config / 'postfix-main.cf').write_text('message_size_limit = 30720000\n')
    (main.config / 'dovecot-quotas.cf').write_text('alice@example.com:11M\n')  # watched: forces a reload cycle
    _wait(lambda: 'userdb_quota_storage_size=11M' in main.exec('cat', '/etc/dovecot/userdb').stdout
          or 'bytes=11M' in main.exec('cat', '/etc/dovecot/userdb').stdout, CHANGE_TIMEOUT,
          'the quota change was not applied', main)
    assert main.exec('postconf', '-h', 'message_size_limit').stdout.strip() == '20480000'


# --------------------------------------------------------------------------------------------------------------
# TLS per SSL_TYPE

def test_manual_certificate_replaced_on_the_host_is_served_without_a_restart(line, main):
    started = main.inspect('{{.State.StartedAt}}')
    assert _served_serial(main.ip, 993) == line.serial
    assert _served_serial(main.ip, 465) == line.serial
    tmp = line.base / 'renewed'
    key, cert, serial = self_signed(tmp, 'renewed', HOSTNAME)
    # A renewal replaces the files (a new inode), as certbot or an operator's copy does.
    shutil.copy(str(key), str(line.tls_dir / 'first-key.pem.new'))
    shutil.copy(str(cert), str(line.tls_dir / 'first-cert.pem.new'))
    os.replace(str(line.tls_dir / 'first-key.pem.new'), str(line.tls_dir / 'first-key.pem'))
    os.replace(str(line.tls_dir / 'first-cert.pem.new'), str(line.tls_dir / 'first-cert.pem'))
    # The mount is the directory, so the container sees the new files (a single-file mount would not).
    _wait(lambda: _served_serial(main.ip, 993) == serial and _served_serial(main.ip, 465) == serial
          and _served_serial(main.ip, 587, implicit=False) == serial, CHANGE_TIMEOUT,
          'the renewed certificate is not served', main)
    assert main.inspect('{{.State.StartedAt}}') == started


def test_letsencrypt_certbot_layout_is_served(line):
    box = line.boxes['le-certbot'].wait_ready()
    assert _served_serial(box.ip, 993) == line.certbot_serial


def test_letsencrypt_traefik_acme_json_is_extracted_into_live(line):
    box = line.boxes['le-acme'].wait_ready()
    assert _served_serial(box.ip, 993) == line.acme_serial
    assert (line.base / 'letsencrypt-acme' / 'live' / HOSTNAME / 'fullchain.pem').exists()


def test_letsencrypt_acme_json_on_a_read_only_mount_fails(line):
    box = line.boxes['le-acme-ro']
    status = box.wait_exit()
    logs = box.logs()
    assert 'LETSENCRYPT_DOMAIN appears to be misconfigured' in logs
    # The panic comes from a subshell ($(...)): one shutdown, not a second SIGTERM to supervisord (exit 143).
    assert logs.count('Shutting down') == 1, logs[-3000:]
    assert status == 0, 'exit status %s%s' % (status, box.diagnostics())


# --------------------------------------------------------------------------------------------------------------
# Rspamd

def test_rspamd_signs_as_rspamd_with_the_key_dms_gave_it(line):
    box = line.boxes['rspamd'].wait_ready()
    status = box.exec('supervisorctl', 'status', check=False).stdout
    assert 'opendkim' in status and not any(r.split()[:2] == ['opendkim', 'RUNNING'] for r in status.splitlines())
    key = next((line.base / 'rspamd' / 'config' / 'rspamd' / 'dkim').glob('*.private.txt'))
    assert box.exec('stat', '-c', '%U', '/tmp/docker-mailserver/rspamd/dkim/' + key.name).stdout.strip() == '_rspamd'
    assert key.stat().st_mode & 0o777 == 0o600
    # SSL_TYPE is empty here: no TLS anywhere, as DMS does it, and AUTH is allowed without it.
    with pytest.raises(OSError):
        _served_serial(box.ip, 993)
    msg, marker = new_message(ALICE[0], ALICE[0], 'rspamd')
    _wait(lambda: box.exec('ss', '-ltn').stdout.count(':11332') > 0, 60, 'rspamd does not listen', box)
    # Its workers, which read the keys, run as _rspamd.
    workers = box.exec('ps', '-o', 'user=,args=', '-C', 'rspamd').stdout.splitlines()
    assert any(w.split()[0] == '_rspamd' and 'proxy' in w for w in workers), workers
    box.submit(*ALICE, msg, tls=False)
    raw = box.wait_for_message(*ALICE, marker, port=143)
    assert b'DKIM-Signature:' in raw, raw[:2000]
    assert _signature_verifies(raw, line.rspamd_record)


def test_rspamd_cannot_sign_with_a_key_it_cannot_read(line):
    box = line.boxes['rspamd-unreadable'].wait_ready()
    assert "does not appear to have correct permissions/ownership for Rspamd" in box.logs()
    msg, marker = new_message(ALICE[0], ALICE[0], 'unreadable')
    _wait(lambda: box.exec('ss', '-ltn').stdout.count(':11332') > 0, 60, 'rspamd does not listen', box)
    box.submit(*ALICE, msg, tls=False)
    raw = box.wait_for_message(*ALICE, marker, port=143)
    assert b'DKIM-Signature:' not in raw


# --------------------------------------------------------------------------------------------------------------
# Last: a restart keeps the first start's configuration

def test_restart_keeps_the_configuration_of_the_first_start(main):
    _run('docker', 'restart', '-t', '20', main.name)
    main.wait_ready()
    _wait(lambda: main.logs().count('is up and running') >= 2, READY_TIMEOUT, 'not ready after the restart', main)
    assert 'Skipping most setup routines' in main.logs()
    # postfix-main.cf was changed after the first start: still not applied.
    assert main.exec('postconf', '-h', 'message_size_limit').stdout.strip() == '20480000'
    _wait(lambda: main.can_login(*ALICE), CHANGE_TIMEOUT, 'alice cannot log in after the restart', main)
