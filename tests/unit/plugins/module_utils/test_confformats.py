# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the override-file parsers and value renderers (plugins/module_utils/_confformats.py)."""
from __future__ import annotations

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _confformats as fmt
from ansible_collections.dms.mailserver.plugins.module_utils import _ucl
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

# -- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize('value, postfix, master, dovecot', [
    (False, 'no', 'no', 'no'),
    (True, 'yes', 'yes', 'yes'),
    (52428800, '52428800', '52428800', '52428800'),
    (1.5, '1.5', '1.5', '1.5'),
    (['a', 'b'], 'a, b', 'a,b', 'a b'),
    ([True, 3], 'yes, 3', 'yes,3', 'yes 3'),
    ('plain', 'plain', 'plain', 'plain'),
])
def test_values_are_rendered_for_the_program_that_reads_them(value, postfix, master, dovecot):
    assert fmt.render_postfix(value, 'f') == postfix
    assert fmt.render_master(value, 'f') == master
    assert fmt.render_dovecot(value, 'f') == dovecot


@pytest.mark.parametrize('renderer', [fmt.render_postfix, fmt.render_master, fmt.render_dovecot])
@pytest.mark.parametrize('value, words', [
    ('a\nb = c', 'line break'),
    ('a\rb', 'line break'),
    ('a\x00', 'NUL'),
    ('a\x1bb', 'control character 0x1b'),
    ('a\udcff', 'not valid UTF-8'),
    ([], 'empty list'),
    ([['nested']], 'list item'),
    ({'a': 1}, 'must be a string'),
])
def test_unrepresentable_values_are_refused_naming_the_field(renderer, value, words):
    with pytest.raises(ValidationError) as exc:
        renderer(value, 'settings.x')
    assert str(exc.value).startswith('settings.x')
    assert words in str(exc.value)


def test_master_values_refuse_white_space_as_postconf_P_does():
    with pytest.raises(ValidationError, match='no white space'):
        fmt.render_master('permit_sasl_authenticated, reject', 'services.x')
    with pytest.raises(ValidationError, match='empty value'):
        fmt.render_master('', 'services.x')


def test_dovecot_values_braces_only_in_variables_and_quoting():
    assert fmt.render_dovecot('/var/mail/%{user | domain}/%{user | username}', 'f') == \
        '/var/mail/%{user | domain}/%{user | username}'
    with pytest.raises(ValidationError, match='section start or end'):
        fmt.render_dovecot('x } service evil {', 'f')
    with pytest.raises(ValidationError, match='section start or end'):
        fmt.render_dovecot('yes } passdb {', 'f')
    with pytest.raises(ValidationError, match='double quote'):
        fmt.render_dovecot('a"b', 'f')
    # " #" starts a comment in Dovecot: such a value is quoted, so it is kept whole.
    assert fmt.render_dovecot('Mail # server', 'f') == '"Mail # server"'


@pytest.mark.parametrize('value, ok', [
    ('$myhostname ESMTP', True), ('${myhostname}', True), ('$(myhostname)', True), ('cost $$5', True),
    ('$', False), ('a $ b', False), ('x$', False), ('$$$', False), ('$-x', False),
])
def test_postfix_dollars_must_be_references(value, ok):
    if ok:
        assert fmt.render_postfix(value, 'f') == value
    else:
        with pytest.raises(ValidationError, match='macro processing error'):
            fmt.render_postfix(value, 'f')


def test_master_dollars_must_be_references():
    assert fmt.render_master('$mua_sender_restrictions', 'f') == '$mua_sender_restrictions'
    with pytest.raises(ValidationError, match='macro processing error'):
        fmt.render_master('x$', 'f')


def test_postfix_values_refuse_outer_white_space():
    with pytest.raises(ValidationError, match='white space'):
        fmt.render_postfix(' x', 'f')


# -- postfix-main.cf -----------------------------------------------------------------------


MAIN = '''# my comment
smtpd_banner = $myhostname ESMTP
mynetworks = 127.0.0.0/8,
    192.0.2.0/24
message_size_limit=1000
message_size_limit = 2000
'''


def test_postfix_main_reads_continuations_and_last_value_wins():
    conf = fmt.PostfixMain(MAIN)
    assert conf.get('mynetworks') == '127.0.0.0/8, 192.0.2.0/24'
    assert conf.get('message_size_limit') == '2000'
    assert conf.keys() == ['smtpd_banner', 'mynetworks', 'message_size_limit']
    assert conf.render() == MAIN


def test_postfix_main_set_keeps_an_equal_entry_and_other_lines_byte_for_byte():
    conf = fmt.PostfixMain(MAIN)
    assert conf.set('mynetworks', '127.0.0.0/8, 192.0.2.0/24') is False
    assert conf.set('smtpd_banner', '$myhostname ESMTP') is False
    assert conf.render() == MAIN


def test_postfix_main_set_replaces_duplicates_in_place_and_appends_new_keys():
    conf = fmt.PostfixMain(MAIN)
    assert conf.set('message_size_limit', '3000') is True
    assert conf.set('smtputf8_enable', 'no') is True
    assert conf.render() == ('# my comment\nsmtpd_banner = $myhostname ESMTP\nmynetworks = 127.0.0.0/8,\n'
                             '    192.0.2.0/24\nmessage_size_limit = 3000\nsmtputf8_enable = no\n')


def test_postfix_main_remove_takes_continuation_lines_along():
    conf = fmt.PostfixMain(MAIN)
    assert conf.remove('mynetworks') is True
    assert conf.remove('nothing_here') is False
    assert 'mynetworks' not in conf.render() and '192.0.2.0/24' not in conf.render()


def test_postfix_main_exclusive_keeps_only_the_named_keys():
    conf = fmt.PostfixMain(MAIN)
    conf.keep_only({'smtpd_banner'})
    assert conf.render() == 'smtpd_banner = $myhostname ESMTP\n'
    assert fmt.PostfixMain('# only a comment\n\n').has_content() is False


# -- postfix-master.cf ---------------------------------------------------------------------


def test_master_overrides_read_like_dms_and_write_service_type_parameter_lines():
    text = ('# proxy\nsmtp/inet/postscreen_upstream_proxy_protocol = haproxy\n  # indented comment\n'
            'Submission/inet/x=y\n')
    conf = fmt.MasterOverrides(text)
    # DMS hands only lines starting with [0-9a-z] to postconf -P: "Submission/..." is not an entry.
    assert conf.keys() == ['smtp/inet/postscreen_upstream_proxy_protocol']
    assert conf.set('smtp/inet/postscreen_upstream_proxy_protocol', 'haproxy') is False
    assert conf.render() == text
    conf.set('submission/inet/smtpd_upstream_proxy_protocol', 'haproxy')
    assert conf.render().endswith('Submission/inet/x=y\nsubmission/inet/smtpd_upstream_proxy_protocol=haproxy\n')


@pytest.mark.parametrize('key, ok', [
    ('smtp/inet/postscreen_upstream_proxy_protocol', True),
    ('127.0.0.1:10025/inet/smtpd_recipient_restrictions', True),
    ('postlog/unix-dgram/maxproc', True),
    ('smtp/bogus/x', False),
    ('smtp/inet', False),
    ('smtp/inet/a b', False),
    ('smtp/inet/a=b', False),
    ('Smtp/inet/x', False),
    ('smtp/inet/x/y', False),
])
def test_master_key_format(key, ok):
    assert bool(fmt.MASTER_KEY.match(key)) is ok


# -- dovecot.cf ---------------------------------------------------------------------------


DOVECOT = '''# mine
mail_max_userip_connections = 50
service imap-login {
  inet_listener imap {
    haproxy = yes   # behind the proxy
  }
}
protocol imap { mail_max_userip_connections = 20 }
!include_try /etc/dovecot/extra.conf
'''


def test_dovecot_conf_reads_settings_and_sections():
    conf = fmt.DovecotConf(DOVECOT)
    assert conf.keys() == ['mail_max_userip_connections']
    assert conf.sections() == ['service imap-login', 'protocol imap']
    assert conf.get('mail_max_userip_connections') == '50'
    assert conf.render() == DOVECOT


def test_dovecot_equal_section_keeps_its_bytes_and_a_changed_one_is_replaced():
    conf = fmt.DovecotConf(DOVECOT)
    lines = fmt.render_section('service imap-login', {'inet_listener imap': {'haproxy': True}}, 'sections.x')
    assert conf.set_section('service imap-login', lines) is False
    assert conf.render() == DOVECOT
    lines = fmt.render_section('service imap-login', {'inet_listener imap': {'haproxy': False}}, 'sections.x')
    assert conf.set_section('service imap-login', lines) is True
    out = conf.render()
    assert 'haproxy = no' in out and '# mine' in out and '!include_try' in out
    assert fmt.DovecotConf(out).sections() == ['service imap-login', 'protocol imap']


def test_dovecot_section_rendering_nests_and_quotes_names():
    lines = fmt.render_section(fmt.section_name('mailbox  Sent Messages', 'f'), {'auto': 'subscribe'}, 'f')
    assert lines == ['mailbox "Sent Messages" {', '  auto = subscribe', '}']


@pytest.mark.parametrize('text, words', [
    ('service imap {\n  x = 1\n', 'never closed'),
    ('}\n', 'never opened'),
])
def test_a_broken_dovecot_conf_is_reported(text, words):
    with pytest.raises(fmt.DovecotError, match=words):
        fmt.DovecotConf(text)


@pytest.mark.parametrize('header, words', [
    ('service imap-login {', 'may only contain'),
    ('service } evil {', 'may only contain'),
    ('Service x', 'not a Dovecot section type'),
    ('', 'must not be empty'),
    ('service a\nb', 'line break'),
])
def test_section_headers_are_checked(header, words):
    with pytest.raises(ValidationError, match=words):
        fmt.section_name(header, 'sections.h')


def test_section_settings_cannot_inject_braces_through_names():
    with pytest.raises(ValidationError, match='not a Dovecot setting name'):
        fmt.render_section('service imap', {'x } service evil { y': 1}, 's')
    with pytest.raises(ValidationError, match='not a Dovecot setting name'):
        fmt.render_section('service imap', {'a = b': 1}, 's')


# -- UCL (moved from _dkim) ------------------------------------------------------------------


def test_ucl_check_accepts_rspamd_overrides_and_refuses_broken_ones():
    _ucl.check('enabled = true;\nactions {\n  reject = 15; # comment\n}\nwhitelist = ["a", "b"];\n')
    _ucl.check('')
    for bad in ('actions {\n reject = 15;\n', 'x = "open\n', 'a = ;', '}\n', 'list = [1, {a = 1]\n'):
        with pytest.raises(_ucl.UclError):
            _ucl.check(bad)


def test_dkim_still_exports_the_ucl_names():
    from ansible_collections.dms.mailserver.plugins.module_utils import _dkim
    assert _dkim.SigningConf is _ucl.SigningConf and _dkim.ucl_tokens is _ucl.ucl_tokens
