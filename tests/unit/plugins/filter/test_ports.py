# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter.ports import (
    dms_env_file, dms_env_refusals, dms_env_strings, dms_mail_ports, dms_port_mapping, dms_summary,
)


@pytest.mark.parametrize('env,ports', [
    # DMS serves IMAP on 143 (STARTTLS) and 993 unless ENABLE_IMAP=0.
    ({}, [25, 143, 465, 587, 993]),
    ({'ENABLE_IMAP': 1}, [25, 143, 465, 587, 993]),
    ({'ENABLE_IMAP': '0'}, [25, 465, 587]),
    ({'ENABLE_POP3': 1}, [25, 110, 143, 465, 587, 993, 995]),
    ({'ENABLE_MANAGESIEVE': True}, [25, 143, 465, 587, 993, 4190]),
    ({'SMTP_ONLY': 1, 'ENABLE_POP3': 1, 'ENABLE_IMAP': 1}, [25, 465, 587]),
    ({'ENABLE_POP3': ''}, [25, 143, 465, 587, 993]),
])
def test_mail_ports(env, ports):
    assert dms_mail_ports(env) == ports


def test_mail_ports_bad_switch():
    with pytest.raises(AnsibleFilterError) as err:
        dms_mail_ports({'ENABLE_POP3': 'maybe'})
    assert 'ENABLE_POP3' in str(err.value)


def test_env_file_is_literal_and_sorted():
    text = dms_env_file({'SSL_TYPE': 'manual', 'ENABLE_FAIL2BAN': True, 'RELAY_PASSWORD': 'p$a"ss word',
                         'DEFAULT_RELAY_HOST': None})
    assert text == 'DEFAULT_RELAY_HOST=\nENABLE_FAIL2BAN=1\nRELAY_PASSWORD=p$a"ss word\nSSL_TYPE=manual\n'


@pytest.mark.parametrize('env', [{'A': 'x\ny'}, {'BAD-NAME': '1'}, {'1X': '1'}])
def test_env_rejects_what_a_file_cannot_carry(env):
    with pytest.raises(AnsibleFilterError):
        dms_env_strings(env)


def test_port_mapping():
    assert dms_port_mapping(25) == '0.0.0.0:25:25'
    assert dms_port_mapping(587, '127.0.0.1', {587: 2587}) == '127.0.0.1:2587:587'
    assert dms_port_mapping(993, '::1', {'993': 1993}) == '[::1]:1993:993'
    assert dms_port_mapping(25, '') == '25:25'


def test_summary_has_no_secrets():
    result = {'created': ['a@x'], 'updated': [], 'removed': [], 'diff': [{'after': 'secret'}], 'changed': True}
    assert dms_summary(result) == {'created': ['a@x'], 'updated': [], 'removed': []}
    assert dms_summary({'skipped': True}) == 'skipped'


def test_env_problems_name_keys_never_values():
    from ansible_collections.dms.mailserver.plugins.filter.ports import dms_env_problems
    problems = dms_env_problems({'RELAY_PASSWORD': 'secret\nvalue', 'BAD-NAME': 1, 'OK': 'fine', 'N': 5})
    assert problems == ["dms_env: 'BAD-NAME' is not a valid environment variable name",
                        'dms_env.RELAY_PASSWORD: the value contains a line break or NUL byte, which an env file '
                        'cannot carry']
    assert 'secret' not in ' '.join(problems)
    assert dms_env_problems({'A': 'x'}) == []


@pytest.mark.parametrize('env,needle', [
    ({'ACCOUNT_PROVISIONER': 'OIDC'}, 'ACCOUNT_PROVISIONER'),
    ({'ACCOUNT_PROVISIONER': 'file'}, 'ACCOUNT_PROVISIONER'),
    ({'SSL_TYPE': 'bogus'}, 'SSL_TYPE'),
    ({'PERMIT_DOCKER': 'everyone'}, 'trusts no network'),
    ({'DOVECOT_INET_PROTOCOLS': 'both'}, 'DOVECOT_INET_PROTOCOLS'),
    ({'LOGROTATE_INTERVAL': 'hourly'}, 'LOGROTATE_INTERVAL'),
    ({'LOGROTATE_COUNT': 'four'}, 'LOGROTATE_COUNT'),
])
def test_env_refusals_name_the_variable(env, needle):
    problems = dms_env_refusals(env)
    assert len(problems) == 1 and needle in problems[0], problems


def test_env_refusals_accept_what_dms_accepts():
    env = {'ACCOUNT_PROVISIONER': 'LDAP', 'SSL_TYPE': '', 'PERMIT_DOCKER': 'connected-networks',
           'DOVECOT_INET_PROTOCOLS': 'ipv4', 'LOGROTATE_INTERVAL': 'weekly', 'LOGROTATE_COUNT': 4,
           'RELAY_PASSWORD': 'anything'}
    assert dms_env_refusals(env) == []
    assert dms_env_refusals({}) == []
