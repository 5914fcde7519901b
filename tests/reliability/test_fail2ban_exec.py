# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_fail2ban's commands, with a recording stand-in for the ``docker`` CLI first in PATH: every call is an argv
list (``docker inspect`` / ``docker exec <container> fail2ban-client ...`` / ``printenv ENABLE_FAIL2BAN``), hostile
input is refused before any ``set`` reaches Fail2ban, and nothing of the container's environment but
ENABLE_FAIL2BAN is read, so a secret there (a relay password) never reaches the output, even at -vvvv.

The stand-in keeps a Fail2ban's state in a JSON file and answers as ``fail2ban-client`` 1.x does; the real thing is
tested in tests/integration/test_dms_image_fail2ban.py.
"""
from __future__ import annotations

import json
import os
import secrets
import sys

import pytest
from dmstest import run_play

FAKE_DOCKER = r'''
import json, os, sys
state_file = os.environ['FAKE_F2B_STATE']
with open(os.environ['FAKE_F2B_LOG'], 'a') as log:
    log.write(json.dumps(sys.argv[1:]) + '\n')
state = json.load(open(state_file))
args = sys.argv[1:]
if args[:2] == ['inspect', '--format']:
    if args[3] != state['container']:
        sys.stderr.write('Error: No such object: %s\n' % args[3]); sys.exit(1)
    print('true'); sys.exit(0)
if args[0] != 'exec' or args[1] != state['container']:
    sys.stderr.write('unexpected: %r\n' % args); sys.exit(125)
cmd = args[2:]
if cmd == ['grep', '^CapEff:', '/proc/1/status']:
    print('CapEff:\t%s' % state['capeff']); sys.exit(0)
if cmd[0] == 'printenv':
    value = state['env'].get(cmd[1])
    if value is None:
        sys.exit(1)
    print(value); sys.exit(0)
assert cmd[0] == 'fail2ban-client', cmd
cmd = cmd[1:]
if cmd == ['ping']:
    print('Server replied: pong'); sys.exit(0)
if cmd == ['banned']:
    print(repr([{jail: ips} for jail, ips in state['jails'].items()])); sys.exit(0)
if cmd[1] not in state['jails']:
    print("Sorry but the jail '%s' does not exist" % cmd[1]); sys.exit(255)
if cmd[0] == 'get' and cmd[2] == 'ignoreip':
    print('These IP addresses/networks are ignored:\n`- 127.0.0.0/8'); sys.exit(0)
if cmd[0] == 'set' and cmd[2] == 'banip':
    state['jails'][cmd[1]] += [ip for ip in cmd[3:] if ip not in state['jails'][cmd[1]]]
elif cmd[0] == 'set' and cmd[2] == 'unbanip':
    state['jails'][cmd[1]] = [ip for ip in state['jails'][cmd[1]] if ip != cmd[3]]
else:
    sys.exit(255)
json.dump(state, open(state_file, 'w'))
print(1)
'''

CONTAINER = 'mailserver'


@pytest.fixture
def fake(tmp_path):
    secret = 'Relay-Secret-%s' % secrets.token_urlsafe(12)
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    docker = bindir / 'docker'
    docker.write_text('#!%s\n%s' % (sys.executable, FAKE_DOCKER))
    docker.chmod(0o755)
    state = tmp_path / 'state.json'
    state.write_text(json.dumps({'container': CONTAINER, 'env': {'ENABLE_FAIL2BAN': '1', 'RELAY_PASSWORD': secret},
                                 # Docker's default capabilities and NET_ADMIN (bit 12).
                                 'capeff': '00000000a80435fb',
                                 'jails': {'custom': [], 'dovecot': [], 'postfix': []}}))
    log = tmp_path / 'calls.jsonl'
    log.write_text('')
    env = {'PATH': '%s:%s' % (bindir, os.environ.get('PATH', '')), 'FAKE_F2B_STATE': str(state),
           'FAKE_F2B_LOG': str(log)}

    class Fake:
        def __init__(self):
            self.secret = secret
            self.env = env

        @staticmethod
        def calls():
            return [json.loads(line) for line in log.read_text().splitlines()]

        @staticmethod
        def jails():
            return json.loads(state.read_text())['jails']

        @staticmethod
        def set_capeff(mask):
            data = json.loads(state.read_text())
            data['capeff'] = mask
            state.write_text(json.dumps(data))

    return Fake()


HOSTILE = [
    {'ip': '$(reboot)'}, {'ip': '192.0.2.1;id'}, {'ip': '`id`'}, {'ip': '192.0.2.1\n--help'},
    {'ip': '--privileged'}, {'ips': ['192.0.2.1', '| nc 192.0.2.2 25']}, {'ip': '192.0.2.1', 'jail': 'custom;id'},
    {'ip': '192.0.2.1', 'jail': '--all'}, {'ip': '192.0.2.1', 'jail': 'sshd'}, {'ip': '127.0.0.9'},
    {'ip': '192.0.2.1', 'container': '-v /:/host'}, {'ip': '192.0.2.1', 'container': 'other'},
    {'ip': '192.0.2.1', 'engine': 'sh'},
]


def test_hostile_input_never_reaches_fail2ban(tmp_path, fake):
    tasks = []
    for number, args in enumerate(HOSTILE):
        tasks.append({'name': 'hostile-%d' % number, 'ignore_errors': True,
                      'dms.mailserver.dms_fail2ban': dict({'container': CONTAINER}, **args)})
    play = run_play(tmp_path, tasks, env=fake.env, name='hostile')
    assert len(play.tasks) == len(HOSTILE), play.stdout + play.stderr
    for args, result in zip(HOSTILE, play.tasks):
        assert result.get('failed') and result.get('msg'), (args, result)
        assert not result.get('changed'), args
    calls = fake.calls()
    assert not [call for call in calls if 'set' in call], calls
    # Only the three read commands, each an argv list aimed at the named container.
    for call in calls:
        assert call[:2] in (['inspect', '--format'], ['exec', CONTAINER]), call
        assert call[2:] in ([CONTAINER], ['printenv', 'ENABLE_FAIL2BAN'], ['fail2ban-client', 'ping'],
                            ['fail2ban-client', 'banned'], ['fail2ban-client', 'get', 'custom', 'ignoreip']) \
            or call[0] == 'inspect', call
    assert fake.jails() == {'custom': [], 'dovecot': [], 'postfix': []}
    assert fake.secret not in play.stdout + play.stderr


def test_a_ban_is_one_argv_and_reads_no_other_environment(tmp_path, fake):
    task = {'name': 'ban', 'dms.mailserver.dms_fail2ban': {'container': CONTAINER, 'ips': ['192.0.2.7', '2001:DB8::/48']}}
    play = run_play(tmp_path, [task, dict(task, name='again')], diff=True, env=fake.env, name='ban')
    assert not play.failed, play.stdout + play.stderr
    assert play.tasks[0]['changed'] and not play.tasks[1]['changed']
    assert fake.jails()['custom'] == ['192.0.2.7', '2001:db8::/48']
    sets = [call for call in fake.calls() if 'set' in call]
    assert sets == [['exec', CONTAINER, 'fail2ban-client', 'set', 'custom', 'banip', '192.0.2.7', '2001:db8::/48']]
    assert not [call for call in fake.calls() if 'printenv' in call and call[-1] != 'ENABLE_FAIL2BAN']
    assert fake.secret not in play.stdout + play.stderr
    # The whole exchange at -vvvv (module arguments, results, warnings) never shows the container's secret.
    query = {'name': 'query', 'dms.mailserver.dms_fail2ban': {'container': CONTAINER, 'state': 'query'}}
    loud = run_play(tmp_path, [query, dict(task, name='ban-again')], verbosity=4, diff=True, env=fake.env,
                    json_output=False, name='loud')
    assert loud.rc == 0, loud.stdout + loud.stderr
    assert '2001:db8::/48' in loud.stdout and fake.secret not in loud.stdout + loud.stderr


def test_a_container_without_net_admin_gets_a_warning_for_ban_and_query(tmp_path, fake):
    """DMS's Fail2ban lists a ban without NET_ADMIN but nftables blocks nothing: the module says so."""
    def tasks(*states):
        return [{'name': state, 'dms.mailserver.dms_fail2ban': {'container': CONTAINER, 'ip': '192.0.2.9',
                                                                'state': state}} for state in states]
    play = run_play(tmp_path, tasks('banned', 'query', 'unbanned'), env=fake.env, name='with')
    assert not play.failed and not any(t.get('warnings') for t in play.tasks), play.tasks
    assert ['exec', CONTAINER, 'grep', '^CapEff:', '/proc/1/status'] in fake.calls()
    fake.set_capeff('00000000a80425fb')  # Docker's default capabilities: no NET_ADMIN
    play = run_play(tmp_path, tasks('banned', 'query', 'unbanned'), env=fake.env, name='without')
    assert not play.failed, play.stdout + play.stderr
    for result in play.tasks[:2]:
        assert any('lacks the NET_ADMIN capability' in w for w in result.get('warnings', [])), result
    assert not play.tasks[2].get('warnings'), play.tasks[2]
    assert play.tasks[0]['changed'] and play.tasks[2]['changed']
