# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_config's anti-spam files against the stand-in images of both DMS release lines: ``spamassassin-rules.cf``,
``amavis.cf`` and ``whitelist_clients.local`` are applied by the container the way DMS applies them (copied at the
first start of a new container, with ENABLE_SPAMASSASSIN, ENABLE_AMAVIS and ENABLE_POSTGREY on), so the module's
``restart_required`` is true for them, and each program shows that it uses the file.

Per line, one container with Amavis, SpamAssassin and Postgrey on (Rspamd and OpenDKIM off). The module fixture
reads what the running container shows, runs dms_config for the three files (twice), reads again what the
container shows while it runs (unchanged: nothing applies these files live), then recreates it on the same volume,
as the role does. Each test compares the three states with each program's own view:

* Postgrey: a policy query over its socket (127.0.0.1:10023) for a client listed in ``whitelist_clients.local``
  gets ``DUNNO``, any other client ``DEFER_IF_PERMIT``; Postfix asks it (``check_policy_service``);
* Amavis: the setting of ``amavis.cf`` (a second listening port) is in force;
* SpamAssassin inside Amavis: a message sent through Postfix and Amavis arrives with the rule of
  ``spamassassin-rules.cf`` in its ``X-Spam-Status``.

The image names come from DMS_TEST_IMAGE_15 and DMS_TEST_IMAGE_16 (default: the stand-ins). Needs root.
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from dmstest import doveadm_hash, run_play, snapshot
from test_dms_image import HOSTNAME, IMAGES, LINES, READY_TIMEOUT, REPO_ROOT, Box, _run, _wait

ALICE = ('alice@example.com', 'Alice-Spam-Pw-1')
POLL = 1
ENV = {'ENABLE_AMAVIS': '1', 'ENABLE_SPAMASSASSIN': '1', 'ENABLE_POSTGREY': '1', 'ENABLE_OPENDKIM': '0',
       'ENABLE_RSPAMD': '0', 'DMS_CONFIG_POLL': str(POLL),
       # X-Spam-Status on every message, whatever its score (DMS's documented way).
       'SA_TAG': '-100000'}
# Amavis with SpamAssassin needs a while to start, and to scan its first message.
DAEMON_TIMEOUT = 180
MAIL_TIMEOUT = 180
WHITE_CLIENT = '192.0.2.55'
OTHER_CLIENT = '192.0.2.56'
AMAVIS_EXTRA_PORT = 10026
RULE = 'DMS_TEST_SPAMFILTER'
SUBJECT_MARK = 'dms-test-spamfilter-mark'
FILES = {
    'spamassassin-rules.cf': 'header %s Subject =~ /%s/\nscore %s 3.3\ndescribe %s dms_config test rule\n'
                             % (RULE, SUBJECT_MARK, RULE, RULE),
    'amavis.cf': 'use strict;\n$inet_socket_port = [10024, %d];\n1;\n' % AMAVIS_EXTRA_PORT,
    'whitelist_clients.local': '# a test client\n%s\n' % WHITE_CLIENT,
}
POLICY_QUERY = r'''
import socket, sys
request = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=%s\n"
           "client_name=unknown\nreverse_client_name=unknown\nhelo_name=client.example.net\n"
           "sender=bob@example.net\nrecipient=alice@example.com\ninstance=%s\n\n" % (sys.argv[1], sys.argv[2]))
with socket.create_connection(("127.0.0.1", 10023), timeout=30) as sock:
    sock.sendall(request.encode())
    print(sock.makefile().readline().strip())
'''

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: starts containers (and maybe dockerd)')


class Lab:
    """The container of one release line and its config dir; recreated as the role recreates it."""

    def __init__(self, line, base):
        self.line = line
        self.image = IMAGES[line]
        self.is16 = line.startswith('16')
        self.base = base
        self.config = base / 'config'
        self.config.mkdir()
        self.config.chmod(0o755)
        (self.config / 'postfix-accounts.cf').write_text('%s|%s\n' % (ALICE[0], doveadm_hash(ALICE[1])))
        self.name = 'dms-spam-test-%s-%s' % (line.replace('.', ''), uuid.uuid4().hex[:8])
        self.box = None
        self.mails = 0
        self.seen = {}

    def run(self):
        args = ['docker', 'run', '-d', '--name', self.name, '--hostname', HOSTNAME, '--dns', '127.0.0.1',
                '--label', 'org.dms-test.pytest=1', '-v', '%s:/tmp/docker-mailserver' % self.config]
        for key, value in ENV.items():
            args += ['-e', '%s=%s' % (key, value)]
        proc = _run(*args, self.image, check=False)
        assert proc.returncode == 0, proc.stderr
        self.box = Box(self.name, self.config)

        def ready():
            if 'is up and running' in self.box.logs():
                return True
            if self.box.inspect('{{.State.Running}}') != 'true':
                pytest.fail('%s stopped before it was ready%s' % (self.name, self.box.diagnostics()))
            return False
        _wait(ready, DAEMON_TIMEOUT, '%s not ready' % self.name, self.box)
        _wait(lambda: all(':%d ' % port in self.listening() for port in (25, 10023, 10024, 10025)),
              DAEMON_TIMEOUT, 'Postfix, Postgrey or Amavis does not listen', self.box)
        return self.box

    def recreate(self):
        _run('docker', 'rm', '-f', self.name)
        return self.run()

    def remove(self):
        _run('docker', 'rm', '-f', '-v', self.name, check=False)

    # what the container shows
    def listening(self):
        return self.box.exec('ss', '-ltnH').stdout

    def postgrey(self, client):
        """Postgrey's answer to Postfix's policy query for a client (a new instance each time)."""
        return self.box.exec('python3', '-c', POLICY_QUERY, client, uuid.uuid4().hex[:12]).stdout.strip()

    def spam_status(self):
        """Send a message with the rule's mark through Postfix (and so Amavis) to alice; its X-Spam-Status."""
        self.mails += 1
        subject = '%s %d' % (SUBJECT_MARK, self.mails)
        message = ('From: %s\nTo: %s\nSubject: %s\nDate: Mon, 30 Nov 2026 12:00:00 +0000\n'
                   'Message-ID: <spam-%d-%s@example.com>\n\nA test message.\n'
                   % (ALICE[0], ALICE[0], subject, self.mails, uuid.uuid4().hex))
        proc = subprocess.run(['docker', 'exec', '-i', self.name, 'sendmail', '-f', ALICE[0], ALICE[0]],
                              input=message, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        script = ('grep -l -r -F -- "Subject: %s" /var/mail/example.com/alice/new /var/mail/example.com/alice/cur '
                  '2>/dev/null | head -n 1' % subject)

        def delivered():
            path = self.box.exec('bash', '-c', script, check=False).stdout.strip()
            return self.box.exec('cat', path).stdout if path else None
        raw = _wait(delivered, MAIL_TIMEOUT, 'the message was not delivered', self.box)
        headers = raw.split('\n\n', 1)[0].replace('\n ', ' ').replace('\n\t', ' ')
        return next((line for line in headers.splitlines() if line.startswith('X-Spam-Status:')), '')

    def state(self, mail=False):
        return {
            'white': self.postgrey(WHITE_CLIENT),
            'other': self.postgrey(OTHER_CLIENT),
            'amavis_port': ':%d ' % AMAVIS_EXTRA_PORT in self.listening(),
            'rules_file': self.box.exec('test', '-e', '/etc/spamassassin/spamassassin-rules.cf',
                                        check=False).returncode == 0,
            # One message per container (Amavis with SpamAssassin is slow on a loaded machine).
            'spam_status': self.spam_status() if mail else None,
            'restrictions': self.box.exec('postconf', '-h', 'smtpd_recipient_restrictions').stdout.strip(),
        }


def _tasks(config):
    return [{'name': name, 'dms.mailserver.dms_config': dict(config_dir=str(config), file=name, content=content)}
            for name, content in FILES.items()]


def _ensure_images():
    """Build a missing image (never rebuild one that exists: other runs may be using it)."""
    missing = [line for line in LINES
               if _run('docker', 'image', 'inspect', IMAGES[line], check=False).returncode != 0]
    if missing:
        subprocess.run(['bash', str(REPO_ROOT / 'hack' / 'build-test-images.sh')] + missing, check=True,
                       stdout=subprocess.DEVNULL)


@pytest.fixture(scope='module', params=LINES)
def lab(request, tmp_path_factory):
    if not os.environ.get('DMS_TEST_IMAGE_%s' % request.param.split('.', maxsplit=1)[0]):
        _ensure_images()
    lab = Lab(request.param, tmp_path_factory.mktemp('dms-spam-%s' % request.param))
    try:
        lab.run()
        lab.seen['before'] = lab.state()
        lab.first = run_play(lab.base, _tasks(lab.config), name='first')
        assert not lab.first.failed, lab.first.stdout + lab.first.stderr
        lab.after_first = snapshot(lab.config)
        lab.second = run_play(lab.base, _tasks(lab.config), name='second')
        assert not lab.second.failed, lab.second.stdout + lab.second.stderr
        lab.after_second = snapshot(lab.config)
        # The change detector polls every POLL s: give it several rounds to (not) apply the files.
        _wait(lambda: lab.box.exec('test', '-e', '/tmp/docker-mailserver-config-chksum', check=False).returncode == 0,
              READY_TIMEOUT, 'no change-detector baseline', lab.box)
        subprocess.run(['sleep', str(POLL * 4)], check=True)
        lab.seen['running'] = lab.state()
        # restart_required: the role recreates the container.
        lab.recreate()
        lab.seen['recreated'] = lab.state(mail=True)
        yield lab
    finally:
        lab.remove()


def _result(play, file):
    return next(task for task in play.tasks if task.get('file') == file)


def test_each_file_asks_for_a_new_container_and_a_second_run_changes_nothing(lab):
    for name in FILES:
        first = _result(lab.first, name)
        assert first['changed'] is True and first['restart_required'] is True, first
        assert first['applies_live'] is False, first
        second = _result(lab.second, name)
        assert second['changed'] is False and second['restart_required'] is False, second
    assert lab.after_second == lab.after_first
    for name, content in FILES.items():
        assert (lab.config / name).read_text() == content


def test_postgrey_honours_whitelist_clients_local_from_the_first_start_of_a_new_container(lab):
    before, running, recreated = lab.seen['before'], lab.seen['running'], lab.seen['recreated']
    # Postfix asks Postgrey last, after Dovecot's quota policy, as DMS composes the list.
    for state in (before, recreated):
        assert state['restrictions'].endswith(
            'check_policy_service inet:localhost:65265, check_policy_service inet:127.0.0.1:10023'), state
    greylisted = 'action=DEFER_IF_PERMIT Delayed by Postgrey'
    assert before['white'] == greylisted and before['other'] == greylisted, before
    # Written, but not applied while the container runs (DMS copies it at setup only).
    assert running['white'] == greylisted, running
    assert recreated['white'] == 'action=DUNNO', recreated
    assert recreated['other'] == greylisted, recreated


def test_amavis_reads_amavis_cf_as_50_user_from_the_first_start_of_a_new_container(lab):
    assert lab.seen['before']['amavis_port'] is False
    assert lab.seen['running']['amavis_port'] is False
    assert lab.seen['recreated']['amavis_port'] is True
    assert lab.box.exec('cat', '/etc/amavis/conf.d/50-user').stdout == FILES['amavis.cf']


def test_spamassassin_in_amavis_scores_with_spamassassin_rules_cf_from_the_first_start(lab):
    # Not copied for SpamAssassin while the container runs (Amavis would load it only when it starts anyway).
    assert lab.seen['before']['rules_file'] is False and lab.seen['running']['rules_file'] is False
    assert lab.seen['recreated']['rules_file'] is True
    # The new container: Amavis ran SpamAssassin on the message, and SpamAssassin used the rule.
    status = lab.seen['recreated']['spam_status']
    assert status.startswith('X-Spam-Status:'), status
    assert ' %s=3.3' % RULE in status or '[%s=3.3' % RULE in status, status


def test_health_check_expects_amavis_and_postgrey_when_enabled(lab):
    if not lab.is16:
        assert lab.box.exec('test', '-e', '/usr/local/bin/dms-healthcheck', check=False).returncode != 0
        return
    assert lab.box.exec('dms-healthcheck', check=False).returncode == 0
    for program in ('amavis', 'postgrey'):
        lab.box.exec('supervisorctl', 'stop', program)
        try:
            assert lab.box.exec('dms-healthcheck', check=False).returncode == 1, program
        finally:
            lab.box.exec('supervisorctl', 'start', program)
    assert lab.box.exec('dms-healthcheck', check=False).returncode == 0
