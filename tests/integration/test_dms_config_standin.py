# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_config against the stand-in images of both DMS release lines (tests/dms-image): the files it writes are
applied by the container, and its ``restart_required`` / ``applies_live`` say truly how.

Per line, one container with Rspamd on (``ENABLE_RSPAMD=1``, ``ENABLE_OPENDKIM=0``, no TLS) on a config dir of
the test. The module fixture reads the values the container has before any change, runs dms_config through
ansible-playbook for ``postfix-main.cf``, ``postfix-master.cf``, ``dovecot.cf`` and ``user-patches.sh``, runs the
same play again, then recreates the container on the same volume (``docker rm -f`` and ``docker run``, as the
role does when ``restart_required`` is true: a restart would skip DMS's setup). The tests read what the new
container shows with its own tools (``postconf``, ``doveconf``, IMAP, ``rspamadm``), and each compares with the
value before the change, so that none can pass by default. The Rspamd test then changes an override on the running
container and proves that the change detector applied it without a restart.

The image names come from DMS_TEST_IMAGE_15 and DMS_TEST_IMAGE_16 (default: the stand-ins), as in
test_dms_image.py. Needs root (dockerd).
"""
from __future__ import annotations

import imaplib
import json
import os
import socket
import subprocess
import uuid

import pytest
from dmstest import doveadm_hash, run_play, snapshot
from test_dms_image import HOSTNAME, IMAGES, LINES, READY_TIMEOUT, REPO_ROOT, Box, _run, _wait

ALICE = ('alice@example.com', 'Alice-Config-Pw-1')
POLL = 1
CHANGE_TIMEOUT = 30
# Rspamd 3.12 (DMS 16) in a new container takes about a minute before its controller answers.
RSPAMD_TIMEOUT = 180
ENV = {'ENABLE_RSPAMD': '1', 'ENABLE_OPENDKIM': '0', 'DMS_CONFIG_POLL': str(POLL)}
GREETING = 'dms_config stand-in test ready'
BANNER = '$myhostname ESMTP dms-config-user-patches'
# A client address the PROXY protocol header claims (TEST-NET-1): Postfix logs it only if it reads the header.
PROXY_CLIENT = '192.0.2.77'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: starts containers (and maybe dockerd)')


def _default_realm(line):
    """The Dovecot setting naming the domain of a login without one: renamed in Dovecot 2.4."""
    return 'auth_default_domain' if line.startswith('16') else 'auth_default_realm'


def _tasks(config, line):
    """The dms_config calls of the first change: one per file DMS reads only when a container sets itself up."""
    def call(**args):
        return {'name': args['file'], 'dms.mailserver.dms_config': dict(config_dir=str(config), **args)}
    return [
        call(file='postfix-main.cf', settings={
            'disable_vrfy_command': False,                  # a YAML boolean: Postfix needs "no" (DMS: yes)
            'mynetworks': ['127.0.0.0/8', '192.0.2.0/24'],  # a list: Postfix reads "a, b"
            'message_size_limit': 31457280,                 # a number
        }),
        # The module's PROXY protocol example: postscreen on port 25, smtpd on 587 and 465.
        call(file='postfix-master.cf', services={
            'smtp/inet/postscreen_upstream_proxy_protocol': 'haproxy',
            'submission/inet/smtpd_upstream_proxy_protocol': 'haproxy',
            'submissions/inet/smtpd_upstream_proxy_protocol': 'haproxy',
        }),
        call(file='dovecot.cf', release_line=line, settings={
            'login_greeting': GREETING,
            _default_realm(line): 'example.com',
        }, sections={
            'protocol imap': {'mail_max_userip_connections': 7},
        }),
        call(file='user-patches.sh', content="#!/bin/bash\npostconf -e 'smtpd_banner = %s'\n" % BANNER),
    ]


class Standin:
    """The stand-in container of one release line and its config dir; recreated as the role recreates it."""

    def __init__(self, line, base):
        self.line = line
        self.image = IMAGES[line]
        self.is16 = line.startswith('16')
        self.base = base
        self.config = base / 'config'
        self.config.mkdir()
        self.config.chmod(0o755)
        (self.config / 'postfix-accounts.cf').write_text('%s|%s\n' % (ALICE[0], doveadm_hash(ALICE[1])))
        self.name = 'dms-config-test-%s-%s' % (line.replace('.', ''), uuid.uuid4().hex[:8])
        self.box = None
        self.banner = None
        self.before = {}

    def run(self):
        args = ['docker', 'run', '-d', '--name', self.name, '--hostname', HOSTNAME, '--dns', '127.0.0.1',
                '--label', 'org.dms-test.pytest=1', '-v', '%s:/tmp/docker-mailserver' % self.config]
        for key, value in ENV.items():
            args += ['-e', '%s=%s' % (key, value)]
        proc = _run(*args, self.image, check=False)
        assert proc.returncode == 0, proc.stderr
        self.banner = None
        self.box = Box(self.name, self.config).wait_ready()
        # supervisorctl has started the daemons; wait until they listen.
        _wait(lambda: all(':%d ' % port in self.box.exec('ss', '-ltnH').stdout for port in (25, 143)),
              READY_TIMEOUT, 'Postfix or Dovecot does not listen', self.box)
        return self.box

    def recreate(self):
        """docker rm -f, then docker run with the same volume and settings: a new container sets itself up."""
        _run('docker', 'rm', '-f', self.name)
        return self.run()

    def remove(self):
        _run('docker', 'rm', '-f', '-v', self.name, check=False)

    # what the container shows
    def postconf(self, *args):
        return self.box.exec('postconf', *args).stdout.strip()

    def doveconf(self, *args):
        return self.box.exec('doveconf', *args).stdout.strip()

    def rspamd_actions(self):
        """The actions of the running Rspamd, from its controller (127.0.0.1:11334 in the container)."""
        script = ('import json, urllib.request\n'
                  'print(json.dumps({a["action"]: a["value"] for a in json.load(urllib.request.urlopen('
                  '"http://127.0.0.1:11334/actions", timeout=5))}))')
        proc = self.box.exec('python3', '-c', script, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def can_login(self, user, password):
        """An IMAP login on 143 (no TLS: SSL_TYPE is empty, as in DMS the logins are then in clear text)."""
        try:
            self.box.imap(user, password, port=143).logout()
        except imaplib.IMAP4.error:
            return False
        return True

    def imap_greeting(self):
        with socket.create_connection((self.box.ip, 143), timeout=15) as sock:
            return sock.makefile('rb').readline().decode('utf-8', 'replace')

    def proxied_smtp_banner(self):
        """Connect to port 25 with a PROXY protocol v1 header claiming PROXY_CLIENT and read the 220 banner (its
        last line). Read once per container: postscreen holds its greeting for postscreen_greet_wait (6 s)."""
        if self.banner is None:
            with socket.create_connection((self.box.ip, 25), timeout=30) as sock:
                sock.sendall(('PROXY TCP4 %s %s 40000 25\r\n' % (PROXY_CLIENT, self.box.ip)).encode())
                reader = sock.makefile('rb')
                line = reader.readline().decode('utf-8', 'replace')
                while line.startswith('220-'):
                    line = reader.readline().decode('utf-8', 'replace')
                sock.sendall(b'QUIT\r\n')
            self.banner = line.strip()
        return self.banner


MANAGED = ('postfix-main.cf', 'postfix-master.cf', 'dovecot.cf', 'user-patches.sh')


def _modes(config):
    return {name: (config / name).stat().st_mode & 0o7777 for name in MANAGED}


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
    lab = Standin(request.param, tmp_path_factory.mktemp('dms-config-%s' % request.param))
    try:
        lab.run()
        realm = _default_realm(lab.line)
        # What the container shows before dms_config changes anything.
        lab.before = {
            'disable_vrfy_command': lab.postconf('-h', 'disable_vrfy_command'),
            'mynetworks': lab.postconf('-h', 'mynetworks'),
            'message_size_limit': lab.postconf('-h', 'message_size_limit'),
            'master': lab.postconf('-P'),
            'smtpd_banner': lab.postconf('-h', 'smtpd_banner'),
            'login_greeting': lab.doveconf('-h', 'login_greeting'),
            realm: lab.doveconf('-h', realm),
            'imap_userip': lab.doveconf('-f', 'protocol=imap', '-h', 'mail_max_userip_connections'),
            'greeting_line': lab.imap_greeting(),
            'short_login': lab.can_login('alice', ALICE[1]),
            'full_login': lab.can_login(*ALICE),
        }
        lab.first = run_play(lab.base, _tasks(lab.config, lab.line), name='first')
        assert not lab.first.failed, lab.first.stdout + lab.first.stderr
        lab.after_first = snapshot(lab.config)
        lab.modes_first = _modes(lab.config)
        lab.second = run_play(lab.base, _tasks(lab.config, lab.line), name='second')
        assert not lab.second.failed, lab.second.stdout + lab.second.stderr
        lab.after_second = snapshot(lab.config)
        lab.modes_second = _modes(lab.config)
        # restart_required: the role recreates the container.
        lab.recreate()
        yield lab
    finally:
        lab.remove()


def _result(play, file):
    return next(task for task in play.tasks if task.get('file') == file)


# --------------------------------------------------------------------------------------------------------------
# Files DMS reads when a container sets itself up

def test_every_change_asks_for_a_new_container_and_a_second_run_changes_nothing(lab):
    for file in MANAGED:
        first = _result(lab.first, file)
        assert first['changed'] is True and first['restart_required'] is True, first
        assert first['applies_live'] is False, first
        second = _result(lab.second, file)
        assert second['changed'] is False and second['restart_required'] is False, second
    assert lab.after_second == lab.after_first
    assert lab.modes_second == lab.modes_first


def test_postfix_main_cf_is_applied_by_the_new_container(lab):
    assert lab.before['disable_vrfy_command'] == 'yes'
    assert lab.postconf('-h', 'disable_vrfy_command') == 'no'
    assert lab.before['mynetworks'] != '127.0.0.0/8, 192.0.2.0/24'
    assert lab.postconf('-h', 'mynetworks') == '127.0.0.0/8, 192.0.2.0/24'
    assert lab.before['message_size_limit'] != '31457280'
    assert lab.postconf('-h', 'message_size_limit') == '31457280'
    # What the container applied is what the module wrote, rendered for Postfix.
    written = (lab.config / 'postfix-main.cf').read_text()
    assert 'disable_vrfy_command = no\n' in written and 'mynetworks = 127.0.0.0/8, 192.0.2.0/24\n' in written


def test_postfix_master_cf_proxy_protocol_is_applied_by_the_new_container(lab):
    expected = ('smtp/inet/postscreen_upstream_proxy_protocol = haproxy',
                'submission/inet/smtpd_upstream_proxy_protocol = haproxy',
                'submissions/inet/smtpd_upstream_proxy_protocol = haproxy')
    before = lab.before['master'].splitlines()
    after = lab.postconf('-P').splitlines()
    for entry in expected:
        assert entry not in before
        assert entry in after, lab.postconf('-P')
    # Postfix reads the PROXY header: postscreen logs the client address the header names, not the test's.
    banner = lab.proxied_smtp_banner()
    assert banner.startswith('220 '), banner
    _wait(lambda: 'CONNECT from [%s]' % PROXY_CLIENT in lab.box.exec('cat', '/var/log/mail/mail.log').stdout,
          CHANGE_TIMEOUT, 'postscreen did not log the proxied client', lab.box)


def test_dovecot_cf_is_applied_by_the_new_container_and_dovecot_runs(lab):
    realm = _default_realm(lab.line)
    assert lab.before['login_greeting'] != GREETING
    assert lab.doveconf('-h', 'login_greeting') == GREETING
    assert lab.before[realm] == ''
    assert lab.doveconf('-h', realm) == 'example.com'
    # The section: protocol imap only.
    assert lab.before['imap_userip'] != '7'
    assert lab.doveconf('-f', 'protocol=imap', '-h', 'mail_max_userip_connections') == '7'
    assert lab.doveconf('-h', 'mail_max_userip_connections') == lab.before['imap_userip']
    # The running Dovecot uses it: its greeting, and a login without a domain now finds alice@example.com.
    assert GREETING not in lab.before['greeting_line']
    assert GREETING in lab.imap_greeting()
    assert lab.before['short_login'] is False
    assert lab.before['full_login'] is True
    _wait(lambda: lab.can_login(*ALICE), CHANGE_TIMEOUT, 'alice cannot log in', lab.box)
    assert lab.can_login('alice', ALICE[1])


def test_user_patches_sh_is_0755_and_run_by_the_new_container(lab):
    assert (lab.config / 'user-patches.sh').stat().st_mode & 0o777 == 0o755
    assert lab.before['smtpd_banner'] != BANNER
    assert lab.postconf('-h', 'smtpd_banner') == BANNER
    assert 'ESMTP dms-config-user-patches' in lab.proxied_smtp_banner()


# --------------------------------------------------------------------------------------------------------------
# Rspamd: applied live by the change detector

def test_rspamd_override_is_applied_live_without_a_restart(lab):
    box = lab.box
    started, restarts = box.inspect('{{.State.StartedAt}}'), box.inspect('{{.RestartCount}}')
    _wait(lab.rspamd_actions, RSPAMD_TIMEOUT, 'the Rspamd controller does not answer', box)
    assert lab.rspamd_actions()['reject'] != 150
    assert 'reject = 150' not in box.exec('rspamadm', 'configdump', 'actions').stdout
    task = {'name': 'actions', 'dms.mailserver.dms_config': dict(
        config_dir=str(lab.config), file='rspamd/override.d/actions.conf', content='reject = 150;\n')}
    play = run_play(lab.base, [task], name='rspamd')
    assert not play.failed, play.stdout + play.stderr
    assert play.result['changed'] is True
    assert play.result['applies_live'] is True and play.result['restart_required'] is False, play.result
    # The change detector copies the override into Rspamd's configuration and reloads Rspamd.
    _wait(lambda: box.exec('cat', '/etc/rspamd/override.d/actions.conf', check=False).stdout == 'reject = 150;\n',
          CHANGE_TIMEOUT, 'the override was not copied to /etc/rspamd/override.d', box)
    assert 'reject = 150' in box.exec('rspamadm', 'configdump', 'actions').stdout
    _wait(lambda: (lab.rspamd_actions() or {}).get('reject') == 150, CHANGE_TIMEOUT,
          'the running Rspamd does not use the override', box)
    assert box.inspect('{{.State.StartedAt}}') == started
    assert box.inspect('{{.RestartCount}}') == restarts
    assert box.inspect('{{.State.Running}}') == 'true'
    # The same call again changes nothing.
    again = run_play(lab.base, [task], name='rspamd-again')
    assert not again.failed and again.result['changed'] is False, again.stdout


def test_rspamd_custom_commands_are_applied_live_without_a_restart(lab):
    # DMS applies rspamd/custom-commands.conf at setup and, when it changes, in its change detector
    # (check-for-changes.sh: _rspamd_handle_user_modules_adjustments, then the Rspamd reload), on top of what
    # /etc/rspamd/override.d holds: here the override of the test above.
    box = lab.box
    started, restarts = box.inspect('{{.State.StartedAt}}'), box.inspect('{{.RestartCount}}')
    _wait(lab.rspamd_actions, RSPAMD_TIMEOUT, 'the Rspamd controller does not answer', box)
    assert lab.rspamd_actions()['add header'] != 7
    task = {'name': 'custom commands', 'dms.mailserver.dms_config': dict(
        config_dir=str(lab.config), file='rspamd/custom-commands.conf',
        content='set-option-for-module actions add_header 7\n')}
    play = run_play(lab.base, [task], name='custom-commands')
    assert not play.failed, play.stdout + play.stderr
    assert play.result['applies_live'] is True and play.result['restart_required'] is False, play.result
    _wait(lambda: (lab.rspamd_actions() or {}).get('add header') == 7, CHANGE_TIMEOUT,
          'the running Rspamd does not use the custom command', box)
    dump = box.exec('rspamadm', 'configdump', 'actions').stdout
    assert 'add_header = 7' in dump and 'reject = 150' in dump, dump
    assert box.inspect('{{.State.StartedAt}}') == started
    assert box.inspect('{{.RestartCount}}') == restarts
    # Without the command DMS keeps its effect until the container is recreated: the module says so, and the
    # running Rspamd still uses it after the change detector's round.
    rounds = box.logs().count('Change detected')
    task['dms.mailserver.dms_config']['content'] = '# no commands\n'
    play = run_play(lab.base, [task], name='custom-commands-removed')
    assert not play.failed, play.stdout + play.stderr
    assert play.result['changed'] is True and play.result['restart_required'] is True, play.result
    _wait(lambda: box.logs().count('Change detected') > rounds, CHANGE_TIMEOUT, 'the change detector did not run',
          box)
    _wait(lambda: not (lab.config / 'check-for-changes.sh.lock').exists(), CHANGE_TIMEOUT,
          'the change detector did not finish its round', box)
    assert 'add_header = 7' in box.exec('cat', '/etc/rspamd/override.d/actions.conf').stdout
    # DMS 15.1 restarts Rspamd after the round: wait for its controller; a reverted value would be 6 (DMS's).
    actions = _wait(lab.rspamd_actions, RSPAMD_TIMEOUT, 'the Rspamd controller does not answer', box)
    assert actions.get('add header') == 7, actions
