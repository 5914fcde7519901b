# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_fetchmail end to end on the stand-ins of both DMS release lines: fetchmail and getmail collect mail from a
local POP3 / IMAP server into the target account.

Per line, one container with ``ENABLE_FETCHMAIL=1`` (``FETCHMAIL_POLL=5``), ``ENABLE_GETMAIL=1`` and
``ENABLE_POP3=1``, no TLS. Its own Dovecot, on 127.0.0.1:110 and :143, is the "remote" server: three of its
accounts are the remote mailboxes (their password has quotes, a backslash and spaces, so the file's quoting is
proven by a real login), and ``alice@example.com`` is the target. The module fixture writes the entries through
ansible-playbook (``--check --diff`` first, then for real, then again), seeds one message in each remote mailbox
(the mail volume is a directory of the test) and starts the container, which sets fetchmail and getmail up at
its first start. The tests read alice's maildir on the host.

The image names come from DMS_TEST_IMAGE_15 and DMS_TEST_IMAGE_16 (default: the stand-ins). Needs root (dockerd).
"""
from __future__ import annotations

import os
import time
import uuid
from email.utils import formatdate, make_msgid

import pytest
from dmstest import doveadm_hash, run_play, snapshot
from test_dms_image import HOSTNAME, IMAGES, LINES, READY_TIMEOUT, Box, _run, _wait
from test_dms_config_standin import _ensure_images

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: docker')

DOMAIN = 'example.com'
ALICE = ('alice@example.com', 'Alice-Fetch-Pw-1')
# The remote mailboxes' password: what fetchmail.cf must quote (\x27, \\) and getmail must keep as it is.
REMOTE_PW = 'Fe\'tch "q" \\x27 \\ pw-7'
POP = 'pop-remote@example.com'
IMAP = 'imap-remote@example.com'
GETMAIL = 'getmail-remote@example.com'
LATER = 'later-remote@example.com'
FETCHMAIL_POLL = 5
DELIVERY_TIMEOUT = 60
# The start of a container with three more daemons, on a machine the suite shares with other tests.
START_TIMEOUT = 2 * READY_TIMEOUT
ENV = {'ENABLE_FETCHMAIL': '1', 'FETCHMAIL_POLL': str(FETCHMAIL_POLL), 'ENABLE_GETMAIL': '1', 'GETMAIL_POLL': '1',
       'ENABLE_POP3': '1', 'ENABLE_OPENDKIM': '0', 'ENABLE_QUOTAS': '0'}


def _fetches(later=False):
    items = [
        {'server': '127.0.0.1', 'protocol': 'pop3', 'port': 110, 'username': POP, 'password': REMOTE_PW,
         'ssl': False, 'cleartext': True, 'keep': False, 'target': ALICE[0]},
        {'server': '127.0.0.1', 'protocol': 'imap', 'port': 143, 'username': IMAP, 'password': REMOTE_PW,
         'ssl': False, 'cleartext': True, 'target': ALICE[0]},
        {'server': '127.0.0.1', 'protocol': 'imap', 'port': 143, 'username': GETMAIL, 'password': REMOTE_PW,
         'ssl': False, 'cleartext': True, 'folders': ['INBOX'], 'target': ALICE[0], 'fetcher': 'getmail'},
    ]
    if later:
        items.append({'server': '127.0.0.1', 'protocol': 'pop3', 'port': 110, 'username': LATER,
                      'password': REMOTE_PW, 'ssl': False, 'cleartext': True, 'target': ALICE[0]})
    return items


def _tasks(config, later=False):
    return [{'name': 'fetches', 'dms.mailserver.dms_fetchmail': {
        'config_dir': str(config), 'fetches': _fetches(later), 'exclusive': True}}]


def _message(sender, marker):
    return ('Return-Path: <%s>\nFrom: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: %s\n\nfetched by %s\n'
            % (sender, sender, sender, marker, formatdate(localtime=False), make_msgid(domain=DOMAIN), marker))


class Lab:
    def __init__(self, line, base):
        self.line = line
        self.base = base
        self.config = base / 'config'
        self.mail = base / 'mail'
        self.config.mkdir()
        self.mail.mkdir()
        self.config.chmod(0o755)
        lines = ['%s|%s' % (ALICE[0], doveadm_hash(ALICE[1]))]
        lines += ['%s|%s' % (user, doveadm_hash(REMOTE_PW)) for user in (POP, IMAP, GETMAIL, LATER)]
        (self.config / 'postfix-accounts.cf').write_text('\n'.join(lines) + '\n')
        self.name = 'dms-fetch-test-%s-%s' % (line.replace('.', ''), uuid.uuid4().hex[:8])
        self.box = None

    def seed(self, user, marker):
        """A message in the remote mailbox of ``user`` (a maildir file, as delivered mail is stored)."""
        local = user.split('@', 1)[0]
        root = self.mail / DOMAIN / local
        for sub in ('new', 'cur', 'tmp'):
            (root / sub).mkdir(parents=True, exist_ok=True)
        path = root / 'new' / ('%d.%s.%s' % (time.time(), uuid.uuid4().hex, HOSTNAME))
        path.write_text(_message(user, marker))
        for item in [self.mail / DOMAIN, root] + [root / sub for sub in ('new', 'cur', 'tmp')] + [path]:
            os.chown(str(item), 5000, 5000)

    def run(self):
        args = ['docker', 'run', '-d', '--name', self.name, '--hostname', HOSTNAME, '--dns', '127.0.0.1',
                '--label', 'org.dms-test.pytest=1', '-v', '%s:/tmp/docker-mailserver' % self.config,
                '-v', '%s:/var/mail' % self.mail]
        for key, value in ENV.items():
            args += ['-e', '%s=%s' % (key, value)]
        proc = _run(*args, IMAGES[self.line], check=False)
        assert proc.returncode == 0, proc.stderr
        self.box = Box(self.name, self.config)

        def ready():
            if 'is up and running' in self.box.logs():
                return True
            if self.box.inspect('{{.State.Running}}') != 'true':
                pytest.fail('%s stopped before it was ready%s' % (self.name, self.box.diagnostics()))
            return False
        _wait(ready, START_TIMEOUT, '%s not ready' % self.name, self.box)

    def remove(self):
        _run('docker', 'rm', '-f', '-v', self.name, check=False)

    def delivered(self, marker):
        """The files of alice's maildir that hold ``marker``."""
        root = self.mail / DOMAIN / 'alice'
        found = []
        for sub in ('new', 'cur'):
            for path in (root / sub).glob('*') if (root / sub).is_dir() else ():
                if marker in path.read_text(errors='replace'):
                    found.append(path)
        return found

    def wait_delivered(self, marker, timeout=DELIVERY_TIMEOUT):
        return _wait(lambda: self.delivered(marker), timeout, 'no message %s in alice\'s mailbox' % marker,
                     self.box)

    def remote_count(self, user):
        root = self.mail / DOMAIN / user.split('@', 1)[0]
        return sum(len(list((root / sub).glob('*'))) for sub in ('new', 'cur'))


@pytest.fixture(scope='module', params=LINES)
def lab(request, tmp_path_factory):
    if not os.environ.get('DMS_TEST_IMAGE_%s' % request.param.split('.', maxsplit=1)[0]):
        _ensure_images()
    lab = Lab(request.param, tmp_path_factory.mktemp('dms-fetch-%s' % request.param))
    try:
        lab.check = run_play(lab.base, _tasks(lab.config), check=True, diff=True, name='check')
        assert not lab.check.failed, lab.check.stdout + lab.check.stderr
        lab.before_check = snapshot(lab.config)
        lab.first = run_play(lab.base, _tasks(lab.config), diff=True, name='first')
        assert not lab.first.failed, lab.first.stdout + lab.first.stderr
        lab.after_first = snapshot(lab.config)
        lab.second = run_play(lab.base, _tasks(lab.config), diff=True, name='second')
        assert not lab.second.failed, lab.second.stdout + lab.second.stderr
        lab.after_second = snapshot(lab.config)
        lab.markers = {user: 'dms-fetch-%s-%s' % (user.split('-', 1)[0], uuid.uuid4().hex[:8])
                       for user in (POP, IMAP, GETMAIL)}
        for user, marker in lab.markers.items():
            lab.seed(user, marker)
        lab.run()
        yield lab
    finally:
        lab.remove()


def test_check_mode_predicts_the_run_and_a_second_run_changes_nothing(lab):
    check, first, second = lab.check.result, lab.first.result, lab.second.result
    assert lab.before_check == {'postfix-accounts.cf': lab.before_check['postfix-accounts.cf']}
    assert check['changed'] and first['changed']
    assert check['changed_files'] == first['changed_files'] == [
        'fetchmail.cf', 'getmail/getmail-remote@example.com@127.0.0.1.cf']
    assert check['created'] == first['created'] and len(first['created']) == 3
    assert first['restart_required'] is True
    assert not second['changed'] and second['changed_files'] == [] and not second['restart_required']
    assert lab.after_second == lab.after_first


def test_files_are_0600_and_secrets_never_shown(lab):
    for name in ('fetchmail.cf', 'getmail/getmail-remote@example.com@127.0.0.1.cf'):
        assert (lab.config / name).stat().st_mode & 0o777 == 0o600
    for play in (lab.check, lab.first, lab.second):
        assert REMOTE_PW not in play.stdout + play.stderr
    diff = str(lab.first.result['diff'])
    assert '<password #1 masked>' in diff and 'pop-remote@example.com' in diff
    fetchmail_cf = (lab.config / 'fetchmail.cf').read_text()
    assert "pass 'Fe\\x27tch \"q\" \\\\x27 \\\\ pw-7'" in fetchmail_cf


def test_fetchmail_in_the_container_reads_the_file_as_written(lab):
    # DMS's /etc/fetchmailrc: the general options, then fetchmail.cf; fetchmail (as its user) reads it back.
    rc = lab.box.exec('cat', '/etc/fetchmailrc').stdout
    assert rc.startswith('# General options\n\nset daemon 300\nset syslog\n')
    assert rc.endswith((lab.config / 'fetchmail.cf').read_text())
    dump = lab.box.exec('su', '-s', '/bin/sh', '-c', 'fetchmail --configdump -f /etc/fetchmailrc', 'fetchmail').stdout
    assert '"password":"Fe\'tch \\"q\\" \\\\x27 \\\\ pw-7"' in dump, dump[-2000:]


@pytest.mark.parametrize('user', [POP, IMAP], ids=['pop3', 'imap'])
def test_fetchmail_collects_into_the_target_account(lab, user):
    lab.wait_delivered(lab.markers[user])


def test_getmail_collects_into_the_target_account_at_start(lab):
    lab.wait_delivered(lab.markers[GETMAIL])


def test_pop3_nokeep_deletes_and_keep_leaves_the_remote_copy(lab):
    lab.wait_delivered(lab.markers[POP])
    lab.wait_delivered(lab.markers[IMAP])
    _wait(lambda: lab.remote_count(POP) == 0, 30, 'the POP3 message (keep: false) still on the server', lab.box)
    assert lab.remote_count(IMAP) == 1


def test_a_new_message_arrives_within_the_poll_interval(lab):
    lab.wait_delivered(lab.markers[POP])
    marker = 'dms-fetch-later-%s' % uuid.uuid4().hex[:8]
    lab.seed(POP, marker)
    started = time.monotonic()
    lab.wait_delivered(marker, timeout=FETCHMAIL_POLL * 3 + 10)
    assert time.monotonic() - started < FETCHMAIL_POLL * 3 + 10


def test_a_change_applies_only_to_a_new_container(lab):
    # DMS reads fetchmail.cf only at the first start: a new entry written now is not fetched by this container.
    lab.wait_delivered(lab.markers[POP])
    before = lab.box.exec('cat', '/etc/fetchmailrc').stdout
    marker = 'dms-fetch-notyet-%s' % uuid.uuid4().hex[:8]
    lab.seed(LATER, marker)
    play = run_play(lab.base, _tasks(lab.config, later=True), name='later')
    assert not play.failed and play.result['changed'] and play.result['restart_required']
    time.sleep(FETCHMAIL_POLL * 3)
    assert lab.box.exec('cat', '/etc/fetchmailrc').stdout == before
    assert not lab.delivered(marker)
    # Back to the first state, so the other tests see the file they expect.
    play = run_play(lab.base, _tasks(lab.config), name='back')
    assert not play.failed and play.result['changed']


def test_health_check_counts_fetchmail_and_getmail(lab):
    if not lab.line.startswith('16'):
        pytest.skip('DMS 15.1 has no health check in its image')
    _wait(lambda: lab.box.exec('dms-healthcheck', check=False).returncode == 0, READY_TIMEOUT,
          'not healthy', lab.box)
    status = lab.box.exec('supervisorctl', 'status', 'fetchmail', 'getmail', check=False).stdout
    assert status.count('RUNNING') == 2, status


# --------------------------------------------------------------------------------------------------------------
# The mailserver role: dms_fetches switches the fetchers on (no container needed: its validation tasks only)

@pytest.mark.parametrize('fetches,env,expected,warned', [
    ([{'server': 'a.example', 'username': 'u'}], {}, (1, None), None),
    ([{'server': 'a.example', 'username': 'u', 'fetcher': 'getmail'},
      {'server': 'b.example', 'username': 'u', 'state': 'absent'}], {}, (None, 1), None),
    ([{'server': 'a.example', 'username': 'u'}], {'ENABLE_FETCHMAIL': 0}, (0, None), 'fetchmail'),
    ([], {}, (None, None), None),
], ids=['fetchmail-on', 'getmail-on-absent-ignored', 'fetchmail-off-warns', 'none'])
def test_role_sets_enable_fetchmail_getmail_and_warns_when_off(tmp_path, fetches, env, expected, warned):
    tasks = [
        {'name': 'validate', 'ansible.builtin.include_role': {'name': 'dms.mailserver.mailserver',
                                                              'tasks_from': 'validate'},
         'vars': {'dms_hostname': HOSTNAME, 'dms_image': 'dms-test:16', 'dms_release_line': '16',
                  'dms_fetches': fetches, 'dms_env': env}},
        {'name': 'show', 'ansible.builtin.set_fact': {
            'fetch_env': "{{ [dms_effective_env.ENABLE_FETCHMAIL | default(none), "
                         "dms_effective_env.ENABLE_GETMAIL | default(none)] }}"}},
    ]
    play = run_play(tmp_path, tasks, name='role')
    assert not play.failed, play.stdout[-3000:] + play.stderr[-3000:]
    assert tuple(play.result['ansible_facts']['fetch_env']) == expected
    warnings = [r.get('msg', '') for t in play.tasks for r in t.get('results', [])
                if 'dms_fetches has' in str(r.get('msg', ''))]
    if warned:
        assert len(warnings) == 1 and 'has %s mailboxes but dms_env sets' % warned in warnings[0], warnings
    else:
        assert not warnings
