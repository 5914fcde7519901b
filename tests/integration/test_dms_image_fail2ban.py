# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail2ban on the stand-ins of both DMS release lines, with dms_config and dms_fail2ban, for real.

Per line, the module fixture makes a Docker network of its own and two client containers on it (``abuser`` and
``office``, the same image with ``sleep`` as entry point), then the mail server with ``ENABLE_FAIL2BAN=1`` and
``NET_ADMIN``. It records Fail2ban's ``ignoreip`` of the first container, writes ``fail2ban-jail.cf`` with
dms_config (``ignoreip`` = loopback and the office's address), and recreates the container as the role does when
``restart_required`` is true. The tests then read the new container's Fail2ban with ``fail2ban-client`` and connect
from the two clients to the server's address on the test's network: nothing leaves that network.

Each test would fail with a stand-in kinder than DMS: jails other than DMS's, a ban that does not block (DMS drops
the packets of every port), an ``ignoreip`` that is not read from the config volume at creation, a health check
that ignores Fail2ban (DMS 16). The image names come from DMS_TEST_IMAGE_15 and DMS_TEST_IMAGE_16 (default: the
stand-ins). Needs root (dockerd).
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from dmstest import doveadm_hash, run_play
from test_dms_image import HOSTNAME, IMAGES, LINES, READY_TIMEOUT, Box, _run, _wait
from test_dms_config_standin import _ensure_images

LABEL = 'org.dms-test.pytest=1'
ACCOUNT = ('alice@example.com', 'Alice-F2b-Pw-1')
ENV = {'ENABLE_FAIL2BAN': '1', 'ENABLE_OPENDKIM': '0', 'ENABLE_POLICYD_SPF': '0'}
JAILS = ['custom', 'dovecot', 'postfix']
# Documentation networks (TEST-NET-2, 2001:db8::/32): banned in Fail2ban only, never contacted.
NET_V4 = '198.51.100.0/24'
ADDR_V6 = '2001:db8:f2b::7'
# A start takes 15 s on an idle machine; a loaded one (several suites at once on 2 cores) has needed minutes.
START_TIMEOUT = 300
CONNECT = ('import socket, sys\n'
           'try:\n'
           '    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n'
           'except OSError as exc:\n'
           '    sys.exit(str(exc) or type(exc).__name__)\n')

# What docs/modules/dms_fail2ban.md tells DMS 16 users to add to fail2ban-jail.cf: Dovecot 2.4's failed-login line
# for the dovecot jail (Fail2ban 1.1.0's filter reads only 2.3's).
DOVECOT_24_JAIL = ('\n[dovecot]\n'
                   'failregex = ^Login aborted: [^(]*\\(auth failed, \\d+ attempts(?: in \\d+ secs)?\\) \\(auth_failed\\):'
                   '(?: user=<[^>]*>,)?(?: method=\\S+,)? rip=<HOST>(?:[^>]*(?:, session=<\\S+>)?)\\s*$\n')
# Failed IMAP logins from a client, all at once (STARTTLS first when the server disables LOGIN before TLS): Dovecot
# delays each further failure from the same address (its auth penalty, up to 15 s), so one after the other would
# take a minute.
FAIL_LOGINS = ('import imaplib, ssl, sys, threading\n'
               'ctx = ssl.create_default_context()\n'
               'ctx.check_hostname = False\n'
               'ctx.verify_mode = ssl.CERT_NONE\n'
               'def attempt(number):\n'
               '    try:\n'
               '        imap = imaplib.IMAP4(sys.argv[1], 143, timeout=40)\n'
               '        if "LOGINDISABLED" in imap.capabilities:\n'
               '            imap.starttls(ssl_context=ctx)\n'
               '        imap.login("alice@example.com", "wrong-password-%d" % number)\n'
               '    except (imaplib.IMAP4.error, OSError):\n'
               '        pass\n'
               'threads = [threading.Thread(target=attempt, args=(n,)) for n in range(int(sys.argv[2]))]\n'
               'for thread in threads:\n'
               '    thread.start()\n'
               'for thread in threads:\n'
               '    thread.join()\n')

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root: starts containers (and maybe dockerd)')


class Lab:
    """The network, the two clients and the mail server of one release line."""

    def __init__(self, line, base):
        self.line = line
        self.is16 = line.startswith('16')
        self.image = IMAGES[line]
        self.base = base
        self.config = base / 'config'
        self.config.mkdir()
        self.config.chmod(0o755)
        (self.config / 'postfix-accounts.cf').write_text('%s|%s\n' % (ACCOUNT[0], doveadm_hash(ACCOUNT[1])))
        tag = uuid.uuid4().hex[:8]
        self.net = 'dms-f2b-net-%s' % tag
        self.name = 'dms-f2b-%s-%s' % (line.replace('.', ''), tag)
        self.clients = {'abuser': 'dms-f2b-abuser-%s' % tag, 'office': 'dms-f2b-office-%s' % tag}
        self.stopped = 'dms-f2b-stopped-%s' % tag
        self.ips = {}
        self.box = None

    def start(self):
        _run('docker', 'network', 'create', '--label', LABEL, self.net)
        for role, name in self.clients.items():
            _run('docker', 'run', '-d', '--name', name, '--label', LABEL, '--network', self.net, '--no-healthcheck',
                 '--entrypoint', 'sleep', self.image, 'infinity')
            self.ips[role] = self.address(name)
        # A container that exists but does not run, for the module's refusal.
        _run('docker', 'create', '--name', self.stopped, '--label', LABEL, '--entrypoint', 'true', self.image)

    def address(self, name):
        return _run('docker', 'inspect', '-f', '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % self.net,
                    name).stdout.strip()

    def run_server(self, env=None, net_admin=True):
        args = ['docker', 'run', '-d', '--name', self.name, '--hostname', HOSTNAME, '--dns', '127.0.0.1',
                '--label', LABEL, '--network', self.net, '-v', '%s:/tmp/docker-mailserver' % self.config]
        if net_admin:
            args += ['--cap-add', 'NET_ADMIN']
        for key, value in dict(ENV, **(env or {})).items():
            args += ['-e', '%s=%s' % (key, value)]
        proc = _run(*args, self.image, check=False)
        assert proc.returncode == 0, proc.stderr
        self.box = Box(self.name, self.config)
        _wait(self._ready, START_TIMEOUT, '%s not ready' % self.name, self.box)
        self.ips['server'] = self.address(self.name)
        _wait(lambda: self.f2b('ping', check=False).returncode == 0, START_TIMEOUT, 'Fail2ban does not answer',
              self.box)
        _wait(lambda: all(self.connects('office', port) is True for port in (25, 143)), START_TIMEOUT,
              'Postfix or Dovecot does not answer the office', self.box)

    def _ready(self):
        if 'is up and running' in self.box.logs():
            return True
        if self.box.inspect('{{.State.Running}}') != 'true':
            pytest.fail('%s stopped before it was ready%s' % (self.name, self.box.diagnostics()))
        return False

    def recreate(self, env=None, net_admin=True):
        _run('docker', 'rm', '-f', self.name)
        self.run_server(env, net_admin)

    def remove(self):
        for name in [self.name, self.stopped] + list(self.clients.values()):
            _run('docker', 'rm', '-f', '-v', name, check=False)
        _run('docker', 'network', 'rm', self.net, check=False)

    def f2b(self, *args, check=True):
        return self.box.exec('fail2ban-client', *args, check=check)

    def banned(self):
        """{jail: [addresses]} from the container's own fail2ban-client status (what setup fail2ban reads)."""
        out = {}
        for jail in JAILS:
            status = self.f2b('status', jail).stdout
            line = [entry for entry in status.splitlines() if 'Banned IP list:' in entry][0]
            out[jail] = line.split(':', 1)[1].split()
        return out

    def ignoreip(self, jail):
        return [entry[3:].strip() for entry in self.f2b('get', jail, 'ignoreip').stdout.splitlines()
                if entry.startswith(('|- ', '`- '))]

    def connects(self, client, port):
        """True when the client opens a TCP connection to the server's port, else the error (3 s timeout)."""
        proc = _run('docker', 'exec', self.clients[client], 'python3', '-c', CONNECT, self.ips['server'], str(port),
                    check=False)
        return True if proc.returncode == 0 else (proc.stderr.strip() or 'rc=%d' % proc.returncode)

    def play(self, name, *calls, check=False, diff=False, env=None):
        """One ansible-playbook run of dms_fail2ban tasks (dicts of its arguments; ``_ignore_errors`` lets a
        refusal be followed by the next task, ``_check`` runs one task in check mode). Returns the task results."""
        tasks = []
        for number, call in enumerate(calls):
            args = dict(call)
            ignore = args.pop('_ignore_errors', False)
            task_check = args.pop('_check', False)
            args.setdefault('container', self.name)
            task = {'name': '%s-%d' % (name, number), 'dms.mailserver.dms_fail2ban': args}
            if ignore:
                task['ignore_errors'] = True
            if task_check:
                task['check_mode'] = True
            tasks.append(task)
        play = run_play(self.base, tasks, check=check, diff=diff, env=env, name=name)
        assert len(play.tasks) == len(tasks), play.stdout + play.stderr
        return play.tasks

    def module(self, name='f2b', check=False, diff=False, env=None, **args):
        return self.play(name, args, check=check, diff=diff, env=env)[0]


def _ignoreip_task(config, ips):
    return {'name': 'fail2ban-jail.cf', 'dms.mailserver.dms_config': {
        'config_dir': str(config), 'file': 'fail2ban-jail.cf',
        'content': '[DEFAULT]\nignoreip = %s\n' % ' '.join(ips)}}


@pytest.fixture(scope='module', params=LINES)
def lab(request, tmp_path_factory):
    if not os.environ.get('DMS_TEST_IMAGE_%s' % request.param.split('.', maxsplit=1)[0]):
        _ensure_images()
    lab = Lab(request.param, tmp_path_factory.mktemp('dms-f2b-%s' % request.param))
    try:
        lab.start()
        lab.run_server()
        lab.ignoreip_before = {jail: lab.ignoreip(jail) for jail in JAILS}
        lab.config_play = run_play(lab.base, [_ignoreip_task(lab.config, ['127.0.0.1/8', lab.ips['office']])],
                                   name='config')
        assert not lab.config_play.failed, lab.config_play.stdout + lab.config_play.stderr
        lab.ignoreip_live = lab.ignoreip('custom')
        lab.recreate()
        yield lab
    finally:
        lab.remove()


# --------------------------------------------------------------------------------------------------------------
# The stand-in: Fail2ban as DMS runs it

def test_fail2ban_runs_dms_jails_under_supervisord(lab):
    status = lab.f2b('status').stdout
    jail_list = [line for line in status.splitlines() if 'Jail list:' in line][0]
    # DMS's jails only: Debian's [sshd] (which would never start in a container) is not among them.
    assert [name.strip() for name in jail_list.split(':', 1)[1].split(',')] == JAILS
    assert 'RUNNING' in lab.box.exec('supervisorctl', 'status', 'fail2ban').stdout
    assert '-xf start' in lab.box.exec('ps', '-o', 'args=', '-C', 'fail2ban-server').stdout
    log = lab.box.exec('cat', '/var/log/mail/fail2ban.log').stdout
    assert "Jail 'custom' started" in log
    # DMS's settings: every port blocked (allports), dropped, custom bans for 180 days, the mail log watched.
    for jail in JAILS:
        assert lab.f2b('get', jail, 'actions').stdout.strip().splitlines()[-1] == 'nftables-allports'
    assert lab.f2b('get', 'custom', 'bantime').stdout.strip() == str(180 * 86400)
    assert lab.f2b('get', 'dovecot', 'bantime').stdout.strip() == str(7 * 86400)
    assert lab.f2b('get', 'postfix', 'maxretry').stdout.strip() == '6'
    assert '/var/log/mail.log' in lab.f2b('get', 'postfix', 'logpath').stdout
    assert lab.box.exec('cat', '/etc/fail2ban/action.d/nftables-common.local').stdout == '[Init]\nblocktype = drop\n'


def test_health_check_of_16_expects_fail2ban(lab):
    if not lab.is16:
        pytest.skip('DMS 15.1 has no health check in its image')
    assert lab.box.exec('dms-healthcheck', check=False).returncode == 0
    lab.box.exec('supervisorctl', 'stop', 'fail2ban')
    try:
        assert lab.box.exec('dms-healthcheck', check=False).returncode != 0
    finally:
        lab.box.exec('supervisorctl', 'start', 'fail2ban')
        _wait(lambda: lab.f2b('ping', check=False).returncode == 0, READY_TIMEOUT, 'Fail2ban back', lab.box)


def test_ignoreip_written_by_dms_config_applies_after_the_recreate_it_asks_for(lab):
    office = lab.ips['office']
    result = lab.config_play.result
    assert result['changed'] and result['restart_required'] and not result['applies_live']
    assert all(office not in lab.ignoreip_before[jail] for jail in JAILS)
    assert office not in lab.ignoreip_live          # not read by a running container
    for jail in JAILS:
        assert office in lab.ignoreip(jail), jail   # read by the new one, for every jail ([DEFAULT])
    assert lab.box.exec('cat', '/etc/fail2ban/jail.d/user-jail.local').stdout == \
        (lab.config / 'fail2ban-jail.cf').read_text()
    again = run_play(lab.base, [_ignoreip_task(lab.config, ['127.0.0.1/8', office])], name='config-again')
    assert not again.failed and not again.result['changed']


# --------------------------------------------------------------------------------------------------------------
# dms_fail2ban

def test_ban_blocks_every_port_and_unban_lets_the_address_in_again(lab):
    abuser = lab.ips['abuser']
    assert lab.connects('abuser', 25) is True and lab.connects('abuser', 143) is True

    # Check mode first: had it banned anything, the real ban after it would not be a change.
    predicted, done, again = lab.play('ban', {'ip': abuser, '_check': True}, {'ip': abuser}, {'ip': abuser},
                                      diff=True)
    assert predicted['changed'] and predicted['actions'] == [{'action': 'ban', 'jail': 'custom', 'ip': abuser}]
    assert predicted['banned']['custom'] == [abuser]
    assert done['changed'] and done['banned']['custom'] == [abuser] and done['totals']['custom'] == 1
    assert done['actions'] == predicted['actions']
    assert abuser in done['diff']['after'] and abuser not in done['diff']['before']
    assert not again['changed'] and again['actions'] == []
    assert lab.banned() == {'custom': [abuser], 'dovecot': [], 'postfix': []}
    for port in (25, 143):
        # DMS's default FAIL2BAN_BLOCKTYPE=drop: the packets vanish, the client times out.
        assert 'timed out' in str(lab.connects('abuser', port)), port
        assert lab.connects('office', port) is True, port

    unban_args = {'ip': abuser, 'state': 'unbanned'}
    unban_check, unban, unban_again = lab.play('unban', dict(unban_args, _check=True), unban_args, unban_args)
    assert unban_check['changed'] and unban_check['actions'] == [{'action': 'unban', 'jail': 'custom', 'ip': abuser}]
    assert unban['changed'] and unban['actions'] == unban_check['actions'] and unban['banned']['custom'] == []
    assert not unban_again['changed'] and unban_again['actions'] == []
    assert lab.banned()['custom'] == []
    assert lab.connects('abuser', 25) is True and lab.connects('abuser', 143) is True


def test_unban_takes_the_address_out_of_every_jail(lab):
    abuser = lab.ips['abuser']
    lab.f2b('set', 'dovecot', 'banip', abuser)
    lab.f2b('set', 'postfix', 'banip', abuser)
    try:
        result = lab.module(name='unban-all', ip=abuser, state='unbanned')
        assert result['changed']
        assert sorted(a['jail'] for a in result['actions']) == ['dovecot', 'postfix']
        assert lab.banned() == {'custom': [], 'dovecot': [], 'postfix': []}
        assert lab.connects('abuser', 25) is True
    finally:
        for jail in JAILS:
            lab.f2b('set', jail, 'unbanip', abuser, check=False)


def test_bulk_ban_query_and_warnings(lab):
    abuser = lab.ips['abuser']
    bulk = [NET_V4, ADDR_V6, abuser]
    env = {'SSH_CONNECTION': '%s 50022 %s 22' % (abuser, lab.ips['server'])}
    try:
        result, query, inner, cleanup = lab.play(
            'bulk', {'ips': bulk, 'protect': ['%s/32' % abuser]}, {'state': 'query'},
            # An address inside a banned network is not unbanned by its own: the module says what still blocks it.
            {'ip': '198.51.100.9', 'state': 'unbanned'},
            {'ips': bulk, 'state': 'unbanned'}, env=env)
        assert result['changed'] and [a['ip'] for a in result['actions']] == bulk
        warnings = '\n'.join(result.get('warnings', []))
        assert 'protected address' in warnings and 'SSH_CONNECTION' in warnings
        assert not query['changed']
        assert query['jails'] == JAILS and query['total'] == 3
        assert sorted(query['banned']['custom']) == sorted(bulk)
        assert query['totals'] == {'custom': 3, 'dovecot': 0, 'postfix': 0}
        assert not inner['changed'] and NET_V4 in '\n'.join(inner.get('warnings', []))
        assert cleanup['changed'] and cleanup['total'] == 0
        assert lab.banned()['custom'] == []
    finally:
        for address in bulk:
            lab.f2b('set', 'custom', 'unbanip', address, check=False)


BAD = [
    ({'ip': 'not-an-ip'}, "ip: 'not-an-ip' is not an IPv4 or IPv6 address"),
    ({'ip': '198.51.100.1/24'}, 'has host bits set'),
    ({'ip': '300.1.2.3'}, 'is not an IPv4 or IPv6 address'),
    ({'ips': ['198.51.100.1', 'evil; rm -rf /']}, 'ips[1]'),
    ({'ip': '198.51.100.1', 'jail': 'nosuchjail'}, "jail: 'nosuchjail' is not a jail"),
    ({'ip': '198.51.100.1', 'jail': '../sshd'}, 'is not a Fail2ban jail name'),
    ({'ip': '127.0.0.5'}, 'is in the ignoreip of jail custom'),
    ({'ip': '198.51.100.1', 'container': 'dms-f2b-no-such-container'}, 'does not exist'),
    ({}, 'missing: ip, ips'),
]


def test_bad_input_is_refused_and_nothing_is_banned(lab):
    office = lab.ips['office']
    office_net = '.'.join(office.split('.')[:2] + ['0', '0']) + '/16'
    cases = BAD + [
        # The office is in ignoreip (fail2ban-jail.cf): never banned, not in a list nor inside a network.
        ({'ips': ['198.51.100.1', office]}, 'is in the ignoreip of jail custom'),
        ({'ip': office_net}, 'is in the ignoreip of jail custom'),
        # Containers without a running Fail2ban.
        ({'container': lab.clients['office'], 'ip': '198.51.100.1'}, 'ENABLE_FAIL2BAN is not set'),
        ({'container': lab.stopped, 'ip': '198.51.100.1'}, 'is not running'),
    ]
    results = lab.play('bad', *[dict(args, _ignore_errors=True) for args, dummy in cases])
    for (args, expected), result in zip(cases, results):
        assert result.get('failed'), (args, result)
        assert expected in result['msg'], (args, result['msg'])
        assert not result.get('changed'), args
    assert lab.banned() == {'custom': [], 'dovecot': [], 'postfix': []}
    assert lab.connects('office', 25) is True


def _fail_logins(lab, count=7):
    _run('docker', 'exec', lab.clients['abuser'], 'python3', '-c', FAIL_LOGINS, lab.ips['server'], str(count),
         check=False)  # the last attempts may time out once the client is banned (dropped)


def _auth_failures(lab, address):
    log = lab.box.exec('cat', '/var/log/mail/mail.log').stdout
    return sum(1 for line in log.splitlines() if 'auth failed' in line and 'rip=%s,' % address in line)


def _ban_by_dovecot_jail_then_unban(lab):
    abuser = lab.ips['abuser']
    _fail_logins(lab)
    _wait(lambda: lab.banned()['dovecot'] == [abuser], START_TIMEOUT, 'the dovecot jail did not ban the client',
          lab.box)
    assert 'timed out' in str(lab.connects('abuser', 143))
    unban, = lab.play('unban-auto', {'ip': abuser, 'state': 'unbanned'})
    assert unban['changed'] and unban['actions'] == [{'action': 'unban', 'jail': 'dovecot', 'ip': abuser}]
    assert lab.banned() == {'custom': [], 'dovecot': [], 'postfix': []}
    assert lab.connects('abuser', 143) is True


def test_failed_logins_ban_the_client_in_the_dovecot_jail_and_the_module_unbans_it(lab):
    """The daily chore: a customer's office mistyped a password too often. DMS's dovecot jail (maxretry 6, read
    from the mail log) bans it; dms_fail2ban without a jail finds it there and lets it in again.

    DMS 16 (Dovecot 2.4, Fail2ban 1.1.0) logs failed logins in a form Fail2ban 1.1.0's dovecot filter does not
    read, so it never bans: the stand-in does the same. The jail override docs/modules/dms_fail2ban.md gives
    (fail2ban-jail.cf through dms_config, applied by a new container) makes it ban."""
    if not lab.is16:
        _ban_by_dovecot_jail_then_unban(lab)
        return
    abuser = lab.ips['abuser']
    _fail_logins(lab)
    _wait(lambda: _auth_failures(lab, abuser) >= 6, START_TIMEOUT, 'the failed logins were not logged', lab.box)
    subprocess.run(['sleep', '5'], check=True)   # Fail2ban reads the log within a second
    assert lab.banned()['dovecot'] == [] and lab.connects('abuser', 143) is True
    jail = (lab.config / 'fail2ban-jail.cf').read_text() + DOVECOT_24_JAIL
    result = run_play(lab.base, [{'dms.mailserver.dms_config': {
        'config_dir': str(lab.config), 'file': 'fail2ban-jail.cf', 'content': jail}}], name='dovecot-24').result
    assert result['changed'] and result['restart_required']
    lab.recreate()
    _ban_by_dovecot_jail_then_unban(lab)


def test_blocktype_reject_refuses_instead_of_dropping(lab):
    """FAIL2BAN_BLOCKTYPE=reject (read at creation): Fail2ban's own nftables default, so a banned client is
    refused at once (ICMP port unreachable) instead of timing out. Runs last: it recreates the server."""
    abuser = lab.ips['abuser']
    lab.recreate({'FAIL2BAN_BLOCKTYPE': 'reject'})
    done, = lab.play('ban-reject', {'ip': abuser})
    assert done['changed'] and done['banned']['custom'] == [abuser]
    for port in (25, 143):
        assert 'refused' in str(lab.connects('abuser', port)).lower(), port
        assert lab.connects('office', port) is True, port
    lab.play('unban-reject', {'ip': abuser, 'state': 'unbanned'})
    assert lab.connects('abuser', 25) is True


def test_without_net_admin_a_ban_is_listed_but_blocks_nothing_and_the_module_warns(lab):
    """As DMS: nothing checks for NET_ADMIN; Fail2ban runs and lists the ban, nftables refuses its rule. Runs
    last: it recreates the server."""
    abuser = lab.ips['abuser']
    lab.recreate(net_admin=False)
    done, = lab.play('ban-no-net-admin', {'ip': abuser})
    assert done['changed'] and lab.banned()['custom'] == [abuser]
    assert any('lacks the NET_ADMIN capability' in w for w in done.get('warnings', [])), done
    _wait(lambda: 'Operation not permitted' in lab.box.exec('cat', '/var/log/mail/fail2ban.log').stdout,
          START_TIMEOUT, 'nftables did not refuse the rule', lab.box)
    assert lab.connects('abuser', 25) is True
