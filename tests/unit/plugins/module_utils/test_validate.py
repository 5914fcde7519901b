# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v

GOOD_ADDRESSES = [
    ('user@example.com', 'user@example.com'),
    ('User.Name+tag@Example.COM', 'user.name+tag@example.com'),
    ("o'brien@mail.example.org", "o'brien@mail.example.org"),
    ('a@localhost.localdomain', 'a@localhost.localdomain'),
    ('x@xn--bcher-kva.example', 'x@xn--bcher-kva.example'),
]

BAD_ADDRESSES = [
    ('userexample.com', 'exactly one "@"'),
    ('a@b@c.com', 'exactly one "@"'),
    ('user @example.com', 'white space'),
    ('user@exa mple.com', 'white space'),
    ('us|er@example.com', "'|'"),
    ('us:er@example.com', "':'"),
    ('a,b@example.com', "','"),
    ('user@example.com\n', 'line break'),
    ('user\x07@example.com', 'control character'),
    ('@example.com', 'before "@" is empty'),
    ('user@', 'empty'),
    ('user@-bad.com', 'label'),
    ('user@exa..mple.com', 'empty label'),
    ('../../etc@example.com', 'contains'),
    ('.user@example.com', 'dots'),
    ('user@exämple.com', 'non-ASCII'),
    ('usеr@example.com', 'non-ASCII'),  # Cyrillic e look-alike
    ('user@10.0.0.1', 'numeric'),
    ('a%b@example.com', 'contains'),
    ('x' * 65 + '@example.com', '64'),
    ('#user@example.com', 'comment'),  # found by tests/reliability/test_parsers.py: the line would be a comment
]


@pytest.mark.parametrize('value,expected', GOOD_ADDRESSES)
def test_good_addresses(value, expected):
    assert v.address(value, 'address') == expected


@pytest.mark.parametrize('value,needle', BAD_ADDRESSES)
def test_bad_addresses_name_field_and_problem(value, needle):
    with pytest.raises(v.ValidationError) as err:
        v.address(value, 'accounts[3].address')
    msg = str(err.value)
    assert msg.startswith('accounts[3].address')
    assert needle in msg


def _full_checks(value):
    """address() without its shortcut for plain addresses."""
    shortcut = v._PLAIN_ADDRESS_RE
    v._PLAIN_ADDRESS_RE = re.compile(r'(?!)')
    try:
        return v.address(value, 'address')
    finally:
        v._PLAIN_ADDRESS_RE = shortcut


NOT_TAKEN = [value for value, dummy in BAD_ADDRESSES] + ['User@example.com', 'u@example.com.', 'a@example.123',
                                                         'a.@example.com']


@pytest.mark.parametrize('value', NOT_TAKEN)
def test_the_shortcut_never_takes_a_bad_or_unnormalised_address(value):
    assert not (len(value) <= 254 and v._PLAIN_ADDRESS_RE.fullmatch(value))


def test_the_shortcut_takes_plain_addresses():
    for value in ('u00001@bench.example', "o'brien+x@mail.example.org", 'a@b.c0', 'x@xn--bcher-kva.example'):
        assert v._PLAIN_ADDRESS_RE.fullmatch(value)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(v._PLAIN_ADDRESS_RE, fullmatch=True))
@example('a' * 64 + '@' + 'b' * 63 + '.' + 'c' * 63 + '.' + 'd' * 61)
def test_whatever_the_shortcut_takes_the_full_checks_accept_unchanged(value):
    if len(value) <= 254:
        assert _full_checks(value) == value


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet='aZ09.-_@#!+=|:, \n\t\x00\u00e9', max_size=40))
def test_shortcut_and_full_checks_agree_on_arbitrary_text(value):
    try:
        expected = _full_checks(value)
    except v.ValidationError:
        with pytest.raises(v.ValidationError):
            v.address(value, 'address')
    else:
        assert v.address(value, 'address') == expected


@pytest.mark.parametrize('value,expected', [('0', '0'), ('1B', '1B'), ('10k', '10k'), ('512M', '512M'),
                                            ('2G', '2G'), ('1T', '1T'), (0, '0')])
def test_quota_good(value, expected):
    assert v.quota(value, 'quota') == expected


@pytest.mark.parametrize('value', ['10', '10m', '10K', '10MB', '1.5G', '-1M', 'M', '', ' 10M', '10 M', '10M\n'])
def test_quota_bad(value):
    with pytest.raises(v.ValidationError) as err:
        v.quota(value, 'quota')
    assert str(err.value).startswith('quota:')


def test_catchall():
    assert v.catchall_or_address('@Example.com', 'alias') == '@example.com'
    with pytest.raises(v.ValidationError):
        v.catchall_or_address('@', 'alias')


@pytest.mark.parametrize('value,expected', [
    ('smtp.example.com', 'smtp.example.com'), ('192.0.2.10', '192.0.2.10'), ('2001:DB8::1', '2001:db8::1')])
def test_host_good(value, expected):
    assert v.host(value, 'host') == expected


@pytest.mark.parametrize('value', ['smtp example.com', '[smtp.example.com]', 'smtp.example.com:587', '', 'a/b'])
def test_host_bad(value):
    with pytest.raises(v.ValidationError) as err:
        v.host(value, 'relays[0].host')
    assert str(err.value).startswith('relays[0].host')


@pytest.mark.parametrize('value', [0, 70000, -1, True, 'x', '25x'])
def test_port_bad(value):
    with pytest.raises(v.ValidationError):
        v.port(value, 'port')


def test_port_good():
    assert v.port(587, 'port') == 587
    assert v.port('25', 'port') == 25


@pytest.mark.parametrize('value', ['mail', 'dkim-2024', 's1.sub', 'Mail_1'])
def test_selector_good(value):
    assert v.selector(value, 'selector') == value.lower()


@pytest.mark.parametrize('value', ['ma il', '.mail', 'mail.', 'a..b', '../x', 'a/b', '-x'])
def test_selector_bad(value):
    with pytest.raises(v.ValidationError):
        v.selector(value, 'selector')
