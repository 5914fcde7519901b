# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the dms_fail2ban logic (plugins/module_utils/_fail2ban.py) against a simulated fail2ban-client
that behaves as Fail2ban 1.0/1.1 does: it bans whatever it is told to, ignoreip or not, and prints what the real
client prints."""
from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _fail2ban
from ansible_collections.dms.mailserver.plugins.module_utils._fail2ban import Fail2banError


class FakeClient:
    """fail2ban-client in a DMS container: jails custom, dovecot, postfix; ignoreip 127.0.0.1/8 + extra."""

    def __init__(self, ignore=('127.0.0.0/8',), running=True):
        self.jails = {'postfix': [], 'dovecot': [], 'custom': []}
        self.ignore = list(ignore)
        self.running = running
        self.calls = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        assert argv[0] == 'fail2ban-client'
        args = argv[1:]
        if not self.running:
            return 255, '', 'Failed to access socket path: /var/run/fail2ban/fail2ban.sock. Is fail2ban running?'
        if args == ['ping']:
            return 0, 'Server replied: pong\n', ''
        if args == ['banned']:
            return 0, repr([{jail: list(ips)} for jail, ips in self.jails.items()]) + '\n', ''
        if args[0] in ('set', 'get') and args[1] not in self.jails:
            return 255, "Sorry but the jail '%s' does not exist\n" % args[1], ''
        if args[0] == 'get' and args[2] == 'ignoreip':
            lines = ['These IP addresses/networks are ignored:']
            lines += ['|- %s' % entry for entry in self.ignore[:-1]] + ['`- %s' % self.ignore[-1]]
            return 0, '\n'.join(lines) + '\n', ''
        if args[0] == 'set' and args[2] == 'banip':
            new = [ip for ip in args[3:] if ip not in self.jails[args[1]]]
            self.jails[args[1]].extend(new)
            return 0, '%d\n' % len(new), ''
        if args[0] == 'set' and args[2] == 'unbanip':
            if args[3] in self.jails[args[1]]:
                self.jails[args[1]].remove(args[3])
                return 0, '1\n', ''
            return 0, '0\n', ''
        raise AssertionError(argv)

    @property
    def changes(self):
        return [call for call in self.calls if call[1] == 'set']


def net(text):
    return _fail2ban.parse_ip(text)


def run(client, state, ips, jail=None, check=False, **kwargs):
    if state == 'banned' and jail is None:
        jail = _fail2ban.DEFAULT_JAIL
    f2b = _fail2ban.Fail2ban(client, 'container mail')
    return _fail2ban.plan_and_apply(f2b, state, [net(ip) for ip in ips], jail, check, **kwargs)


# input ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    ('192.0.2.1', '192.0.2.1'), ('192.0.2.0/24', '192.0.2.0/24'), ('192.0.2.1/32', '192.0.2.1'),
    ('2001:DB8::0001', '2001:db8::1'), ('2001:db8::/64', '2001:db8::/64'), ('::ffff:192.0.2.1', '::ffff:c000:201'),
])
def test_addresses_and_networks_are_given_to_fail2ban_in_short_form(text, expected):
    assert _fail2ban.text_of(net(text)) == expected


@pytest.mark.parametrize('text,message', [
    ('', 'is required'), ('   ', 'is required'), ('not-an-ip', 'is not an IPv4 or IPv6'),
    ('192.0.2.1/24', 'host bits'), ('256.1.1.1', 'is not an IPv4'), ('192.0.2.1 ', 'white space'),
    ('192.0.2.1\n10.0.0.1', 'white space'), ('192.0.2.1;reboot', 'is not an IPv4'), ('fe80::1%eth0', 'scoped'),
    ('192.0.2.1/33', 'is not an IPv4'), ('-192.0.2.1', 'is not an IPv4'), (None, 'is required'),
])
def test_bad_addresses_are_refused_naming_the_field(text, message):
    with pytest.raises(Fail2banError) as exc:
        _fail2ban.parse_ip(text, 'ips[2]')
    assert str(exc.value).startswith('ips[2]: ') and message in str(exc.value)


@pytest.mark.parametrize('name', ['', '../sshd', 'a b', '-x', 'custom\n', 'x' * 65, None])
def test_bad_jail_names_are_refused(name):
    with pytest.raises(Fail2banError, match='^jail: '):
        _fail2ban.check_jail(name)


def test_networks_are_deduplicated_in_order():
    assert [str(n) for n in _fail2ban.networks(['192.0.2.1', '192.0.2.1/32', '10.0.0.0/8'], 'ips')] == \
        ['192.0.2.1/32', '10.0.0.0/8']


# fail2ban-client output ---------------------------------------------------------------------------------------

def test_banned_output_of_fail2ban_is_read_without_evaluating_code():
    text = "[{'postfix': []}, {'dovecot': ['192.0.2.7']}, {'custom': ['192.0.2.0/24', '2001:db8::1']}]\n"
    assert _fail2ban.parse_banned(text) == {'postfix': [], 'dovecot': ['192.0.2.7'],
                                            'custom': ['192.0.2.0/24', '2001:db8::1']}
    for hostile in ("__import__('os').system('id')", '[{1: open}]', 'garbage'):
        with pytest.raises(Fail2banError):
            _fail2ban.parse_banned(hostile)


def test_ignoreip_output_is_read():
    text = 'These IP addresses/networks are ignored:\n|- 127.0.0.0/8\n|- mail.example.com\n`- 192.0.2.9\n'
    assert _fail2ban.parse_ignoreip(text) == ['127.0.0.0/8', 'mail.example.com', '192.0.2.9']
    assert _fail2ban.parse_ignoreip('No IP address/network is ignored\n') == []


@pytest.mark.parametrize('status, expected', [
    ('Name:\tdumb-init\nCapInh:\t0000000000000000\nCapEff:\t00000000a80435fb\n', True),   # --cap-add NET_ADMIN
    ('CapEff:\t00000000a80425fb\n', False),                                               # Docker's default set
    ('CapEff:\t000001ffffffffff\n', True),                                                # --privileged
    ('CapEff:\tzz\n', None), ('', None),
])
def test_net_admin_is_bit_12_of_capeff(status, expected):
    assert _fail2ban.cap_net_admin(status) is expected


def test_controller_address_comes_from_ssh_connection():
    assert _fail2ban.ssh_client_address({'SSH_CONNECTION': '192.0.2.50 50022 192.0.2.1 22'}) == \
        ipaddress.ip_network('192.0.2.50/32')
    assert _fail2ban.ssh_client_address({}) is None
    assert _fail2ban.ssh_client_address({'SSH_CONNECTION': 'junk'}) is None


# ban / unban ---------------------------------------------------------------------------------------------------

def test_ban_in_custom_by_default_and_a_second_ban_changes_nothing():
    client = FakeClient()
    result, warnings = run(client, 'banned', ['192.0.2.7'])
    assert result['changed'] and result['actions'] == [{'action': 'ban', 'jail': 'custom', 'ip': '192.0.2.7'}]
    assert client.jails['custom'] == ['192.0.2.7'] and result['banned']['custom'] == ['192.0.2.7']
    assert result['totals'] == {'custom': 1, 'dovecot': 0, 'postfix': 0} and result['total'] == 1
    assert warnings == []
    calls = len(client.changes)
    again, dummy = run(client, 'banned', ['192.0.2.7/32'])
    assert not again['changed'] and again['actions'] == [] and len(client.changes) == calls


def test_check_mode_predicts_and_changes_nothing():
    client = FakeClient()
    client.jails['postfix'] = ['192.0.2.9']
    result, dummy = run(client, 'banned', ['192.0.2.7', '198.51.100.0/24'], check=True)
    assert result['changed'] and [a['ip'] for a in result['actions']] == ['192.0.2.7', '198.51.100.0/24']
    assert result['banned']['custom'] == ['192.0.2.7', '198.51.100.0/24']
    assert client.changes == [] and client.jails['custom'] == []
    unban, dummy = run(client, 'unbanned', ['192.0.2.9'], check=True)
    assert unban['changed'] and unban['actions'] == [{'action': 'unban', 'jail': 'postfix', 'ip': '192.0.2.9'}]
    assert client.changes == [] and client.jails['postfix'] == ['192.0.2.9']
    assert unban['diff']['before'] != unban['diff']['after']


def test_unban_takes_the_address_out_of_every_jail_or_only_the_given_one():
    client = FakeClient()
    for jail in ('custom', 'dovecot', 'postfix'):
        client.jails[jail] = ['2001:db8::1', '192.0.2.7']
    result, dummy = run(client, 'unbanned', ['2001:DB8::1'], jail='dovecot')
    assert [a['jail'] for a in result['actions']] == ['dovecot']
    result, dummy = run(client, 'unbanned', ['2001:db8::1'])
    assert sorted(a['jail'] for a in result['actions']) == ['custom', 'postfix']
    assert all(client.jails[jail] == ['192.0.2.7'] for jail in client.jails)
    again, dummy = run(client, 'unbanned', ['2001:db8::1'])
    assert not again['changed']


def test_an_address_inside_a_banned_network_is_named_with_that_network():
    client = FakeClient()
    client.jails['custom'] = ['198.51.100.0/24']
    result, warnings = run(client, 'unbanned', ['198.51.100.9'])
    assert not result['changed'] and client.changes == []
    assert warnings and '198.51.100.0/24' in warnings[0] and 'custom' in warnings[0]


@pytest.mark.parametrize('ips', [['127.0.0.5'], ['192.0.2.1', '10.1.2.3'], ['10.0.0.0/8'], ['10.1.0.0/16']])
def test_ignoreip_is_never_banned_and_nothing_else_is_banned_either(ips):
    client = FakeClient(ignore=['127.0.0.0/8', '10.1.2.3'])
    with pytest.raises(Fail2banError, match='is in the ignoreip of jail custom') as exc:
        run(client, 'banned', ips)
    assert 'nothing was banned' in str(exc.value)
    assert client.changes == [] and client.jails['custom'] == []


def test_unknown_jail_is_refused_with_the_servers_jails():
    client = FakeClient()
    with pytest.raises(Fail2banError) as exc:
        run(client, 'banned', ['192.0.2.7'], jail='sshd')
    assert str(exc.value) == "jail: 'sshd' is not a jail of the Fail2ban in container mail; its jails: " \
        'custom, dovecot, postfix'
    assert client.changes == []


def test_warnings_for_protected_and_controller_addresses_and_host_names_in_ignoreip():
    client = FakeClient(ignore=['127.0.0.0/8', 'office.example.com'])
    result, warnings = run(client, 'banned', ['203.0.113.0/24'],
                           protect=[net('203.0.113.10')], controller=net('203.0.113.99'))
    assert result['changed']
    text = '\n'.join(warnings)
    assert 'protected address (203.0.113.10)' in text
    assert '203.0.113.99, the address this run connects from' in text
    assert 'office.example.com' in text


def test_an_ipv6_ban_does_not_touch_an_ipv4_ignore_list():
    client = FakeClient(ignore=['0.0.0.0/0'])
    result, dummy = run(client, 'banned', ['2001:db8::/32'])
    assert result['changed'] and client.jails['custom'] == ['2001:db8::/32']


def test_a_ban_fail2ban_did_not_make_is_an_error():
    class Stubborn(FakeClient):
        def __call__(self, argv):
            if argv[1:3] == ['set', 'custom'] and argv[3] == 'banip':
                self.calls.append(list(argv))
                return 0, '0\n', ''
            return super().__call__(argv)
    with pytest.raises(Fail2banError, match='did not ban 192.0.2.7 in jail custom'):
        run(Stubborn(), 'banned', ['192.0.2.7'])


def test_not_enabled_or_not_running_is_refused():
    f2b = _fail2ban.Fail2ban(FakeClient(), 'container mail')
    with pytest.raises(Fail2banError, match='ENABLE_FAIL2BAN is not set, not 1'):
        f2b.require_running('')
    with pytest.raises(Fail2banError, match="ENABLE_FAIL2BAN is '0', not 1"):
        f2b.require_running('0')
    f2b.require_running('1')
    down = _fail2ban.Fail2ban(FakeClient(running=False), 'container mail')
    with pytest.raises(Fail2banError, match='Fail2ban is not running in container mail: .*Is fail2ban running'):
        down.require_running('1')


def test_every_command_is_an_argument_list_for_fail2ban_client():
    client = FakeClient()
    run(client, 'banned', ['192.0.2.7', '2001:db8::/48'])
    assert all(isinstance(call, list) and call[0] == 'fail2ban-client' for call in client.calls)
    assert ['fail2ban-client', 'set', 'custom', 'banip', '192.0.2.7', '2001:db8::/48'] in client.calls
