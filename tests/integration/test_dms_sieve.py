# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_sieve end to end on the stand-ins of both DMS release lines (tests/dms-image).

Per line, one container (no TLS, no OpenDKIM, change detector every second) on a config dir of the test with four
accounts. Before the container is created, dms_sieve writes a global ``before`` script (DMS reads it only then);
the tests then change user scripts on the running container through ansible-playbook and watch what Dovecot does
with mail delivered by Postfix (``sendmail`` in the container: pickup, cleanup, LMTP, as mail from outside):

* a global ``before`` script files a tagged message of every account, with or without a script of its own;
* a user's rule files a matching message into a folder, seen over IMAP, applied live by DMS's change detector
  (the module's comment in postfix-accounts.cf), with --check predicting exactly, --diff showing the script and a
  second run changing nothing;
* a vacation reply goes back to the sender through Postfix once per ``days`` window, and to another sender too;
* after ``state: absent`` the filter and the reply are gone, although DMS keeps the home copy;
* the stand-in is not kinder than DMS: a script written without a change of the accounts file is not copied.

Tests run in file order on the shared container. Needs root (dockerd).
"""
from __future__ import annotations

import imaplib
import os
import time
import uuid

import pytest
from dmstest import doveadm_hash, run_play
from dmstest import snapshot as _snapshot
from mailclient import new_message
from test_dms_config_standin import _ensure_images
from test_dms_image import HOSTNAME, IMAGES, LINES, READY_TIMEOUT, Box, _run, _wait

ALICE = ('alice@example.com', 'Alice-Sieve-Pw-1')
BOB = ('bob@example.com', 'Bob-Sieve-Pw-2')
CAROL = ('carol@example.com', 'Carol-Sieve-Pw-3')
DAVE = ('dave@example.com', 'Dave-Sieve-Pw-4')
USERS = (ALICE, BOB, CAROL, DAVE)
POLL = 1
CHANGE_TIMEOUT = 30
MAIL_TIMEOUT = 45
ENV = {'DMS_CONFIG_POLL': str(POLL), 'ENABLE_OPENDKIM': '0', 'SSL_TYPE': ''}
GLOBAL_BEFORE = ('require ["fileinto", "mailbox"];\n'
                 'if header :is "X-Dms-Sieve-Global" "yes" { fileinto :create "GlobalTagged"; stop; }\n')
ALICE_RULE = ('require ["fileinto", "mailbox"];\n'
              'if header :contains "subject" "quarterly-report" { fileinto :create "Reports"; }\n')
NEUTRAL = ('# dms.mailserver.dms_sieve: no filter for this account (state=absent).\n'
           '# DMS keeps the last script it copied into the home; this one replaces it.\n'
           'keep;\n')


def snapshot(config):
    """The config dir's files, without the change detector's lock (there while DMS handles a change)."""
    return dict((k, v) for k, v in _snapshot(config).items() if k != 'check-for-changes.sh.lock')


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: starts containers (and maybe dockerd)')


class Lab:
    """The container of one release line and its config dir."""

    def __init__(self, line, base):
        self.line = line
        self.base = base
        self.config = base / 'config'
        self.config.mkdir()
        self.config.chmod(0o755)
        (self.config / 'postfix-accounts.cf').write_text(
            ''.join('%s|%s\n' % (user, doveadm_hash(password)) for user, password in USERS))
        self.name = 'dms-sieve-test-%s-%s' % (line.replace('.', ''), uuid.uuid4().hex[:8])
        self.box = None
        self.vacation_subject = 'Out of office %s' % uuid.uuid4().hex[:8]

    def run(self):
        args = ['docker', 'run', '-d', '--name', self.name, '--hostname', HOSTNAME, '--dns', '127.0.0.1',
                '--label', 'org.dms-test.pytest=1', '-v', '%s:/tmp/docker-mailserver' % self.config]
        for key, value in ENV.items():
            args += ['-e', '%s=%s' % (key, value)]
        proc = _run(*args, IMAGES[self.line], check=False)
        assert proc.returncode == 0, proc.stderr
        self.box = Box(self.name, self.config).wait_ready()
        _wait(lambda: ':143 ' in self.box.exec('ss', '-ltnH').stdout, READY_TIMEOUT, 'Dovecot does not listen',
              self.box)

    def remove(self):
        _run('docker', 'rm', '-f', '-v', self.name, check=False)

    def play(self, tasks, **kwargs):
        result = run_play(self.base, [{'name': 'sieve %d' % i, 'dms.mailserver.dms_sieve':
                                       dict(config_dir=str(self.config), validate='always', **task)}
                                      for i, task in enumerate(tasks)], **kwargs)
        assert not result.failed, result.stdout + result.stderr
        return result

    # the container
    def home_script(self, user):
        local, domain = user.split('@')
        proc = self.box.exec('cat', '/var/mail/%s/%s/home/.dovecot.sieve' % (domain, local), check=False)
        return proc.stdout if proc.returncode == 0 else None

    def wait_home_script(self, user, text):
        _wait(lambda: self.home_script(user) == text, CHANGE_TIMEOUT,
              'DMS did not copy the script of %s into its home' % user, self.box)

    def deliver(self, sender, to, label, headers=None):
        """A message from ``sender`` to ``to`` through Postfix's sendmail (pickup → cleanup → LMTP)."""
        msg, marker = new_message(sender, to, label)
        for key, value in (headers or {}).items():
            msg[key] = value
        proc = _run('docker', 'exec', '-i', self.name, 'sendmail', '-f', sender, to, input=msg.as_string(),
                    check=False)
        assert proc.returncode == 0, proc.stderr
        return marker

    def count(self, user, folder, text, field='SUBJECT'):
        """Messages of ``folder`` whose ``field`` contains ``text`` (0 when the folder does not exist). Retried
        when the connection drops: the change detector reloads Dovecot after each change."""
        for attempt in range(5):
            try:
                return self._count(user, folder, text, field)
            except (imaplib.IMAP4.error, OSError):  # also "* BYE Shutting down" while Dovecot reloads
                if attempt == 4:
                    raise
                time.sleep(1)
        return 0

    def _count(self, user, folder, text, field):
        imap = self.box.imap(user[0], user[1], port=143)
        try:
            status, dummy = imap.select('"%s"' % folder, readonly=True)
            if status != 'OK':
                return 0
            status, data = imap.search(None, field, '"%s"' % text)
            return len(data[0].split()) if status == 'OK' else 0
        except imaplib.IMAP4.error:
            return 0
        finally:
            imap.logout()

    def wait_in(self, user, folder, text, field='SUBJECT'):
        _wait(lambda: self.count(user, folder, text, field) > 0, MAIL_TIMEOUT,
              'no message %r in %s of %s' % (text, folder, user[0]), self.box)


@pytest.fixture(scope='module', params=LINES)
def lab(request, tmp_path_factory):
    if not os.environ.get('DMS_TEST_IMAGE_%s' % request.param.split('.', maxsplit=1)[0]):
        _ensure_images()
    lab = Lab(request.param, tmp_path_factory.mktemp('dms-sieve-%s' % request.param))
    try:
        # DMS reads a global script only when a container is created: written first, restart_required says so.
        lab.first = lab.play([{'scope': 'before', 'script': GLOBAL_BEFORE}])
        lab.run()
        yield lab
    finally:
        lab.remove()


def test_global_before_script_applies_to_every_account(lab):
    first = lab.first.result
    assert first['changed'] and first['restart_required'] and not first['applies_live'], first
    # alice gets a script of her own first: the global script runs before it, for her too.
    lab.play([{'address': ALICE[0], 'script': ALICE_RULE}])
    lab.wait_home_script(ALICE[0], ALICE_RULE)
    markers = {}
    for user in USERS:
        markers[user] = lab.deliver(DAVE[0], user[0], 'global', headers={'X-Dms-Sieve-Global': 'yes'})
    for user in USERS:
        lab.wait_in(user, 'GlobalTagged', markers[user])
        assert lab.count(user, 'INBOX', markers[user]) == 0


def test_rule_files_a_matching_message_into_a_folder_live(lab):
    """--check predicts, --diff shows the script, the run applies it live, a second run changes nothing."""
    rule = ALICE_RULE.replace('quarterly-report', 'yearly-report')
    before = snapshot(lab.config)
    check = lab.play([{'address': ALICE[0], 'script': rule}], check=True, diff=True).result
    assert snapshot(lab.config) == before
    assert check['changed'] and check['changed_files'] == ['alice@example.com.dovecot.sieve', 'postfix-accounts.cf']
    shown = {d['after_header']: d['after'] for d in check['diff']}
    assert shown['alice@example.com.dovecot.sieve'] == rule
    assert '$6$' not in shown['postfix-accounts.cf'], 'a password hash is shown in the diff'

    done = lab.play([{'address': ALICE[0], 'script': rule}]).result
    assert done['changed_files'] == check['changed_files'] and done['updated'] == [ALICE[0]]
    assert done['applies_live'] and not done['restart_required']
    after = snapshot(lab.config)
    again = lab.play([{'address': ALICE[0], 'script': rule}]).result
    assert not again['changed'] and snapshot(lab.config) == after

    # Without a restart: DMS's change detector copies it (the container keeps running).
    lab.wait_home_script(ALICE[0], rule)
    assert lab.box.inspect('{{.RestartCount}}') == '0'
    match = lab.deliver(BOB[0], ALICE[0], 'yearly-report')
    other = lab.deliver(BOB[0], ALICE[0], 'other')
    lab.wait_in(ALICE, 'Reports', match)
    lab.wait_in(ALICE, 'INBOX', other)
    assert lab.count(ALICE, 'INBOX', match) == 0


def test_vacation_replies_to_the_sender_once_per_days_window(lab):
    res = lab.play([{'address': BOB[0], 'vacation': {'subject': lab.vacation_subject, 'days': 1,
                                                     'body': 'I am away.\nBack "soon" \\o/'}}]).result
    assert res['created'] == [BOB[0]] and res['applies_live']
    text = (lab.config / 'bob@example.com.dovecot.sieve').read_text()
    lab.wait_home_script(BOB[0], text)

    first = lab.deliver(ALICE[0], BOB[0], 'vacation-1')
    lab.wait_in(ALICE, 'INBOX', lab.vacation_subject)
    second = lab.deliver(ALICE[0], BOB[0], 'vacation-2')
    lab.wait_in(BOB, 'INBOX', second)
    # Another sender gets its own reply (the window is per sender), which also shows the second was processed.
    lab.deliver(CAROL[0], BOB[0], 'vacation-3')
    lab.wait_in(CAROL, 'INBOX', lab.vacation_subject)
    assert lab.count(ALICE, 'INBOX', lab.vacation_subject) == 1, 'alice got more than one reply within the window'
    assert lab.count(BOB, 'INBOX', first) == 1
    # The reply went through Postfix (the original sender's envelope), from bob.
    assert lab.count(ALICE, 'INBOX', BOB[0], field='FROM') >= 1


def test_absent_really_stops_the_old_behaviour(lab):
    res = lab.play([{'address': ALICE[0], 'state': 'absent'}, {'address': BOB[0], 'state': 'absent'}])
    assert [t['removed'] for t in res.tasks] == [[ALICE[0]], [BOB[0]]]
    # DMS keeps the home copy when the volume's script goes: the neutral script replaces it there.
    lab.wait_home_script(ALICE[0], NEUTRAL)
    lab.wait_home_script(BOB[0], NEUTRAL)
    match = lab.deliver(BOB[0], ALICE[0], 'yearly-report-after')
    lab.wait_in(ALICE, 'INBOX', match)
    assert lab.count(ALICE, 'Reports', match) == 0
    # dave never wrote to bob: without the vacation script he gets no reply.
    marker = lab.deliver(DAVE[0], BOB[0], 'after-vacation')
    lab.wait_in(BOB, 'INBOX', marker)
    time.sleep(3)
    assert lab.count(DAVE, 'INBOX', lab.vacation_subject) == 0
    again = lab.play([{'address': ALICE[0], 'state': 'absent'}]).result
    assert not again['changed']


def test_standin_copies_a_user_script_only_when_the_accounts_change(lab):
    """As DMS: the script file is not watched; a script written by hand waits for an account rebuild, and a script
    deleted from the volume keeps running from the home copy."""
    hand = 'require "fileinto";\nfileinto "ByHand";\n'
    (lab.config / 'carol@example.com.dovecot.sieve').write_text(hand)
    time.sleep(POLL * 4 + 2)
    assert lab.home_script(CAROL[0]) is None
    (lab.config / 'carol@example.com.dovecot.sieve').unlink()
    (lab.config / 'dave@example.com.dovecot.sieve').write_text(hand)
    with (lab.config / 'postfix-accounts.cf').open('a') as handle:
        handle.write('# an account rebuild\n')
    lab.wait_home_script(DAVE[0], hand)
    (lab.config / 'dave@example.com.dovecot.sieve').unlink()
    with (lab.config / 'postfix-accounts.cf').open('a') as handle:
        handle.write('# another account rebuild\n')
    time.sleep(POLL * 4 + 2)
    assert lab.home_script(DAVE[0]) == hand
    assert lab.home_script(CAROL[0]) is None

    # A global script is read only when a container is created: a change says so and is not applied live.
    changed = lab.play([{'scope': 'before', 'script': 'keep;\n'}]).result
    assert changed['restart_required'] and not changed['applies_live']
    time.sleep(POLL * 4 + 2)
    proc = lab.box.exec('cat', '/usr/lib/dovecot/sieve-global/before/50-before.dovecot.sieve')
    assert proc.stdout == GLOBAL_BEFORE
