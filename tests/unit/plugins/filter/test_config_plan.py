# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter.config import FilterModule, dms_config_plan


def test_filter_is_registered():
    assert set(FilterModule().filters()) == {'dms_config_plan'}


def test_first_run_calls_and_record():
    plan = dms_config_plan({}, {'smtputf8_enable': False}, {'recipient_delimiter': '+'}, [
        {'file': 'fail2ban-jail.cf', 'content': '[DEFAULT]\nignoreip = 192.0.2.1\n'},
        {'file': 'dovecot.cf', 'sections': {'service imap-login': {'inet_listener imap': {'haproxy': True}}}},
    ], '16')
    assert plan['calls'][0] == {'file': 'postfix-main.cf', 'settings': {'smtputf8_enable': False}}
    assert plan['calls'][1] == {'file': 'dovecot.cf', 'settings': {'recipient_delimiter': '+'}, 'release_line': '16'}
    assert plan['calls'][3]['release_line'] == '16'
    files = plan['record']['files']
    assert files['postfix-main.cf']['settings'] == ['smtputf8_enable']
    assert files['dovecot.cf'] == {'settings': ['recipient_delimiter'], 'services': [],
                                   'sections': ['service imap-login'], 'content': False}
    assert files['fail2ban-jail.cf']['content'] is True


def test_emptying_the_variables_removes_what_the_role_managed_before_and_only_that():
    first = dms_config_plan({}, {'smtputf8_enable': False, 'message_size_limit': 1}, {}, [
        {'file': 'fail2ban-jail.cf', 'content': '[DEFAULT]\n'},
        {'file': 'postfix-master.cf', 'services': {'smtp/inet/postscreen_upstream_proxy_protocol': 'haproxy'}},
    ], '15')
    second = dms_config_plan(first['record'], {'smtputf8_enable': False}, {}, [], '15')
    assert second['calls'] == [
        {'file': 'fail2ban-jail.cf', 'state': 'absent'},
        {'file': 'postfix-main.cf', 'state': 'absent', 'settings': {'message_size_limit': None}},
        {'file': 'postfix-master.cf', 'state': 'absent',
         'services': {'smtp/inet/postscreen_upstream_proxy_protocol': None}},
        {'file': 'postfix-main.cf', 'settings': {'smtputf8_enable': False}},
    ]
    third = dms_config_plan(second['record'], {}, {}, [], '15')
    assert third['calls'] == [{'file': 'postfix-main.cf', 'state': 'absent', 'settings': {'smtputf8_enable': None}}]
    assert third['record']['files'] == {}
    assert dms_config_plan(third['record'], {}, {}, [], '15')['calls'] == []


def test_null_values_and_absent_items_are_not_recorded():
    plan = dms_config_plan({}, {'a': None}, {}, [{'file': 'amavis.cf', 'state': 'absent'}], '16')
    assert plan['record']['files'] == {'postfix-main.cf': {'settings': [], 'services': [], 'sections': [],
                                                           'content': False}}


@pytest.mark.parametrize('files, words', [
    ([{'settings': {}}], 'at least "file"'),
    (['postfix-main.cf'], 'at least "file"'),
    ([{'file': 'amavis.cf', 'contents': 'x'}], 'contents'),
])
def test_bad_items(files, words):
    with pytest.raises(AnsibleFilterError, match=words):
        dms_config_plan({}, {}, {}, files, '16')


def test_a_broken_record_is_reported():
    with pytest.raises(AnsibleFilterError, match='record'):
        dms_config_plan({'files': ['x']}, {}, {}, [], '16')
