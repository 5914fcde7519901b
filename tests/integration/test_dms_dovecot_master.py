# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_dovecot_master against the stand-in images of both DMS release lines: a master user made by the module
opens alice's mailbox over IMAP as ``alice@example.com*admin``, and changing or removing the master applies
while the container runs, through DMS's change detector (DMS watches ``dovecot-masters.cf``).

Per line, one container (no TLS, ``DMS_CONFIG_POLL=1``) on a config dir with alice's account and no
``dovecot-masters.cf``: the first master also proves that the master login is switched on live the first time
the file appears, as DMS does. The module fixture runs the whole story once, through ansible-playbook, and
records what it saw; the tests assert on the records. Each login check is compared with the opposite state
(before / after), so that none passes by default.

The image names come from DMS_TEST_IMAGE_15 and DMS_TEST_IMAGE_16 (default: the stand-ins). Needs root.
"""
from __future__ import annotations

import imaplib
import json
import os
import subprocess
import time
import uuid

import pytest
from dmstest import doveadm_hash, run_play, snapshot
from test_dms_image import HOSTNAME, IMAGES, LINES, READY_TIMEOUT, REPO_ROOT, Box, _run, _wait

ALICE = ('alice@example.com', 'Alice-Master-Test-1')
MASTER = 'admin'
PASSWORD_1 = 'Master pw: one|1'
PASSWORD_2 = 'Master pw two #2'
POLL = 1
CHANGE_TIMEOUT = 30
MARKER = 'dms-master-test-%s' % uuid.uuid4().hex[:8]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: starts containers (and maybe dockerd)')


def _task(config, **args):
    return {'name': 'master', 'dms.mailserver.dms_dovecot_master': dict(config_dir=str(config), **args)}


def _ensure_images():
    """Build a missing image (never rebuild one that exists: other runs may be using it)."""
    missing = [line for line in LINES
               if _run('docker', 'image', 'inspect', IMAGES[line], check=False).returncode != 0]
    if missing:
        subprocess.run(['bash', str(REPO_ROOT / 'hack' / 'build-test-images.sh')] + missing, check=True,
                       stdout=subprocess.DEVNULL)


class Lab:
    def __init__(self, line, base):
        self.line = line
        self.base = base
        self.config = base / 'config'
        self.config.mkdir()
        self.config.chmod(0o755)
        (self.config / 'postfix-accounts.cf').write_text('%s|%s\n' % (ALICE[0], doveadm_hash(ALICE[1])))
        self.name = 'dms-master-test-%s-%s' % (line.replace('.', ''), uuid.uuid4().hex[:8])
        self.box = None
        self.seen = {}

    def run(self):
        proc = _run('docker', 'run', '-d', '--name', self.name, '--hostname', HOSTNAME, '--dns', '127.0.0.1',
                    '--label', 'org.dms-test.pytest=1', '-v', '%s:/tmp/docker-mailserver' % self.config,
                    '-e', 'DMS_CONFIG_POLL=%d' % POLL, IMAGES[self.line], check=False)
        assert proc.returncode == 0, proc.stderr
        self.box = Box(self.name, self.config).wait_ready()
        _wait(lambda: ':143 ' in self.box.exec('ss', '-ltnH').stdout, READY_TIMEOUT, 'Dovecot does not listen',
              self.box)

    def remove(self):
        _run('docker', 'rm', '-f', '-v', self.name, check=False)

    def started(self):
        """When the container's process started and how often Docker restarted it: a restart changes it."""
        return self.box.inspect('{{.State.StartedAt}} {{.RestartCount}}')

    def login(self, user, password):
        """An IMAP session (cleartext on 143: SSL_TYPE is empty), or None when the login is refused."""
        try:
            return self.box.imap(user, password, port=143)
        except imaplib.IMAP4.error:
            return None

    def can_login(self, user, password):
        imap = self.login(user, password)
        if imap is None:
            return False
        imap.logout()
        return True

    def master_login(self, password, user=ALICE[0]):
        return self.can_login('%s*%s' % (user, MASTER), password)

    def wait_login(self, password, expected, what):
        start = time.monotonic()
        _wait(lambda: self.master_login(password) is expected, CHANGE_TIMEOUT, what, self.box)
        return time.monotonic() - start

    def read_marker(self, user, password):
        """The subject of the marker message in ``user``'s INBOX, read through that login."""
        imap = self.login(user, password)
        assert imap is not None, user
        try:
            imap.select('INBOX', readonly=True)
            dummy, data = imap.search(None, 'SUBJECT', '"%s"' % MARKER)
            ids = data[0].split()
            if not ids:
                return None
            dummy, msg = imap.fetch(ids[-1], '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
            return msg[0][1].decode().strip()
        finally:
            imap.logout()

    def play(self, label, check=False, diff=False, **args):
        res = run_play(self.base, [_task(self.config, **args)], check=check, diff=diff, name=label)
        assert not res.failed, res.stdout + res.stderr
        return res


@pytest.fixture(scope='module', params=LINES)
def lab(request, tmp_path_factory):
    if not os.environ.get('DMS_TEST_IMAGE_%s' % request.param.split('.', maxsplit=1)[0]):
        _ensure_images()
    lab = Lab(request.param, tmp_path_factory.mktemp('dms-master-%s' % request.param))
    seen = lab.seen
    try:
        lab.run()
        started = lab.started()
        # alice's mailbox gets a message, stored through alice's own login.
        imap = lab.login(*ALICE)
        assert imap is not None
        imap.append('INBOX', None, None, ('From: alice@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\n'
                                          '\r\nfor the master user\r\n' % MARKER).encode())
        imap.logout()
        seen['before'] = lab.master_login(PASSWORD_1)

        # Predicted, then made: the first master.
        seen['check_create'] = lab.play('check-create', check=True, diff=True, name=MASTER, password=PASSWORD_1)
        seen['after_check_create'] = snapshot(lab.config)
        seen['create'] = lab.play('create', diff=True, name=MASTER, password=PASSWORD_1)
        seen['create_wait'] = lab.wait_login(PASSWORD_1, True, 'the new master cannot log in')
        seen['marker_as_master'] = lab.read_marker('%s*%s' % (ALICE[0], MASTER), PASSWORD_1)
        seen['wrong_password'] = lab.master_login(PASSWORD_1 + 'x')
        seen['unknown_user'] = lab.master_login(PASSWORD_1, user='nobody@example.com')
        seen['alice_still'] = lab.can_login(*ALICE)
        seen['master_as_itself'] = lab.can_login(MASTER, PASSWORD_1)

        # The same again: nothing to do.
        files = snapshot(lab.config)
        seen['again'] = lab.play('again', name=MASTER, password=PASSWORD_1)
        seen['again_identical'] = snapshot(lab.config) == files

        # A new password: predicted exactly, then applied live.
        seen['check_change'] = lab.play('check-change', check=True, diff=True,
                                        name=MASTER, password=PASSWORD_2)
        seen['check_change_identical'] = snapshot(lab.config) == files
        seen['change'] = lab.play('change', diff=True, name=MASTER, password=PASSWORD_2)
        lab.wait_login(PASSWORD_2, True, 'the changed password does not work')
        seen['old_after_change'] = lab.master_login(PASSWORD_1)

        # Removed: applied live.
        seen['remove'] = lab.play('remove', name=MASTER, state='absent')
        lab.wait_login(PASSWORD_2, False, 'the removed master can still log in')
        seen['masters_file_after_remove'] = (lab.config / 'dovecot-masters.cf').read_text()
        seen['restarted'] = lab.started() != started
        yield lab
    finally:
        lab.remove()


def test_master_login_reads_alices_mailbox(lab):
    seen = lab.seen
    assert seen['before'] is False          # no master before the module made one
    assert seen['create'].result['created'] == [MASTER]
    assert seen['create'].result['login_separator'] == '*'
    assert seen['marker_as_master'] is not None and MARKER in seen['marker_as_master']
    # The master password opens only existing users' mailboxes, and only with the separator.
    assert seen['wrong_password'] is False
    assert seen['unknown_user'] is False
    assert seen['master_as_itself'] is False
    assert seen['alice_still'] is True


def test_changes_apply_without_a_restart(lab):
    seen = lab.seen
    for step in ('create', 'change', 'remove'):
        assert seen[step].result['changed'] is True, step
        assert seen[step].result['restart_required'] is False, step
    assert seen['change'].result['updated'] == [MASTER]
    assert seen['old_after_change'] is False
    assert seen['remove'].result['removed'] == [MASTER]
    # The file stays (DMS's change detector ignores a file that disappears), without the master.
    assert MASTER not in seen['masters_file_after_remove']
    assert seen['restarted'] is False


def test_second_run_changes_nothing(lab):
    seen = lab.seen
    assert seen['again'].result['changed'] is False
    assert seen['again'].result['created'] == seen['again'].result['updated'] == []
    assert seen['again_identical'] is True


def test_check_mode_predicts_exactly_and_diff_is_masked(lab):
    seen = lab.seen
    check, real = seen['check_create'].result, seen['create'].result
    assert check['changed'] is True and check['created'] == real['created'] == [MASTER]
    assert check['changed_files'] == real['changed_files'] == ['dovecot-masters.cf']
    assert 'dovecot-masters.cf' not in seen['after_check_create']
    assert seen['check_change'].result['updated'] == seen['change'].result['updated'] == [MASTER]
    assert seen['check_change_identical'] is True
    for step in ('check_create', 'create', 'check_change', 'change'):
        result = seen[step].result
        diff = json.dumps(result['diff'])
        assert '<hash #' in diff and 'admin|{SHA512-CRYPT}' in diff, diff
        out = seen[step].stdout + seen[step].stderr
        for secret in (PASSWORD_1, PASSWORD_2, '$6$'):
            assert secret not in out, (step, secret)
