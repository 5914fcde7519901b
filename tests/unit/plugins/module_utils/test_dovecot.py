# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Dovecot settings check for dovecot.cf, per DMS release line, and the release line of an image."""
from __future__ import annotations

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _dovecot as d
from ansible_collections.dms.mailserver.plugins.module_utils import _dovecot_settings as known
from ansible_collections.dms.mailserver.plugins.module_utils._release import image_tag, release_line


def one(settings, line):
    found = d.problems(settings, line)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize('old,new', [
    ('disable_plaintext_auth', 'auth_allow_cleartext'),
    ('ssl_cert', 'ssl_server_cert_file'),
    ('ssl_key', 'ssl_server_key_file'),
    ('ssl_dh', 'ssl_server_dh_file'),
    ('ssl_prefer_server_ciphers', 'ssl_server_prefer_ciphers'),
    ('mail_location', 'mail_driver'),
    ('mail_location', 'mail_path'),
    ('verbose_ssl', 'log_debug = category=ssl'),
    ('quota_grace', 'quota_storage_grace'),
    ('quota_max_mail_size', 'quota_mail_size'),
])
def test_23_setting_refused_on_16_with_the_24_name(old, new):
    message = one({old: 'x'}, '16')
    assert message.startswith('dms_dovecot_conf.%s:' % old)
    assert new in message and '2.4' in message


def test_cleartext_rename_says_the_meaning_is_inverted():
    message = one({'disable_plaintext_auth': 'no'}, '16')
    assert 'opposite meaning' in message and 'auth_allow_cleartext = yes' in message


@pytest.mark.parametrize('new,old', [
    ('auth_allow_cleartext', 'disable_plaintext_auth'),
    ('ssl_server_cert_file', 'ssl_cert'),
    ('ssl_server_prefer_ciphers', 'ssl_prefer_server_ciphers'),
    ('quota_storage_grace', 'plugin/quota_grace'),  # a plugin { } setting in 2.3
])
def test_24_name_accepted_on_16_and_refused_on_15_with_the_23_form(new, old):
    assert d.problems({new: 'x'}, '16') == []
    message = one({new: 'x'}, '15')
    assert message.startswith('dms_dovecot_conf.%s:' % new)
    assert 'where it is %s' % old in message


def test_23_names_accepted_on_15():
    assert d.problems({'disable_plaintext_auth': 'no', 'ssl_cert': '</etc/dms/tls/cert.pem',
                       'mail_location': 'maildir:/var/mail/%d/%n', 'mail_plugins': '$mail_plugins quota',
                       'plugin/quota_rule': '*:storage=1G'}, '15') == []


@pytest.mark.parametrize('line', ['15', '16'])
@pytest.mark.parametrize('value', ['+', '-', '+-', ''])
def test_recipient_delimiter_accepted_on_both_lines(line, value):
    assert d.problems({'recipient_delimiter': value}, line) == []


@pytest.mark.parametrize('line', ['15', '16'])
def test_names_unchanged_between_the_lines_are_accepted_on_both(line):
    settings = {'mail_max_userip_connections': 50, 'default_process_limit': '200',
                'login_trusted_networks': '10.0.0.0/8', 'auth_master_user_separator': '*'}
    assert d.problems(settings, line) == []


def test_plugin_settings_top_level_on_16_and_in_plugin_on_15():
    assert d.problems({'quota_status_nouser': 'DUNNO'}, '16') == []
    assert 'plugin/quota_status_nouser' in one({'quota_status_nouser': 'DUNNO'}, '15')
    assert d.problems({'plugin/quota_status_nouser': 'DUNNO'}, '15') == []
    message = one({'plugin/quota_status_nouser': 'DUNNO'}, '16')
    assert 'no plugin section' in message and 'write quota_status_nouser' in message
    assert 'no plugin section' in one({'plugin': 'x'}, '16')


def test_list_items_on_16_only():
    assert d.problems({'mail_plugins/quota': 'yes'}, '16') == []
    assert 'plugin/<name>' in one({'mail_plugins/quota': 'yes'}, '15')
    assert 'longer paths' in one({'protocol/imap/mail_plugins/quota': 'yes'}, '16')


def test_2_3_forms_that_pass_doveconf_but_break_at_run_time_are_refused_on_16():
    message = one({'mail_plugins': '$mail_plugins quota'}, '16')
    assert 'mail_plugins/<item> = yes' in message
    found = d.problems({'mail_path': '/var/mail/%d/%n', 'mail_home': '/var/mail/%u/home'}, '16')
    assert len(found) == 3
    assert any('%d' in m and '%{user | domain}' in m for m in found)
    assert any('%n' in m and '%{user | username}' in m for m in found)
    assert any('%u' in m and '%{user}' in m for m in found)
    assert d.problems({'mail_path': '/var/mail/%{user | domain}/%{user | username}',
                       'quota_storage_grace': '10%%', 'mail_plugins': 'quota'}, '16') == []


def test_strftime_formats_are_not_variables():
    assert d.problems({'log_timestamp': '%Y-%m-%d %H:%M:%S '}, '16') == []


def test_file_settings_take_a_path_on_16():
    assert 'without the leading <' in one({'ssl_server_cert_file': '</etc/dms/tls/cert.pem'}, '16')
    assert d.problems({'ssl_server_cert_file': '/etc/dms/tls/cert.pem'}, '16') == []


def test_24_variable_filters_refused_on_15():
    assert '%u' in one({'mail_home': '/var/mail/%{user | domain}/home'}, '15')


@pytest.mark.parametrize('value,needle', [
    (None, 'no value'), ([['a']], 'a boolean or a list'), ({'a': 1}, 'a boolean or a list'),
    ('a\nssl = no', 'line break'), (['a', '$mail_plugins'], 'Dovecot 2.3 syntax'),
])
def test_bad_values(value, needle):
    assert needle in one({'mail_max_userip_connections': value}, '16')


def test_messages_do_not_echo_values():
    found = d.problems({'ssl_server_key_password': 'Secret-1\n', 'ssl_key_password': 'Secret-2'}, '16')
    assert found and not any('Secret' in m for m in found)


def test_unknown_names_get_a_near_match_and_sections_are_named():
    assert 'did you mean mail_max_userip_connections' in one({'mail_max_userip_conections': 5}, '16')
    assert 'is a section' in one({'service': 'x'}, '16')
    assert 'is a section' in one({'plugin': 'x'}, '15')
    assert 'not a Dovecot setting name' in one({'Bad Name': 'x'}, '15')


def test_field_name_and_unknown_line():
    assert d.problems({'disable_plaintext_auth': 'no'}, '16', 'x')[0].startswith('x.disable_plaintext_auth:')
    with pytest.raises(ValueError):
        d.problems({}, '14')


@pytest.mark.parametrize('name', sorted(d.NOT_IN_DOVECONF_A['16']))
def test_24_settings_doveconf_a_does_not_print_are_accepted_for_16(name):
    # login_greeting and the others exist in Dovecot 2.4.1 (dms-test:16's doveconf -n takes them) but are missing
    # from its doveconf -a dump: they were refused for DMS 16 as 2.3-only settings.
    assert name not in known.SETTINGS['16']
    assert d.name_problem(name, '16') is None
    assert name not in d.RENAMED_IN_24


def test_generated_lists_look_complete():
    # doveconf -a of Dovecot 2.3.19 and 2.4.1 with DMS's package set (hack/dovecot-settings.sh).
    assert len(known.SETTINGS['15']) > 250 and len(known.SETTINGS['16']) > 600
    assert 'disable_plaintext_auth' in known.SETTINGS['15'] and 'disable_plaintext_auth' not in known.SETTINGS['16']
    assert 'auth_allow_cleartext' in known.SETTINGS['16'] and 'auth_allow_cleartext' not in known.SETTINGS['15']
    # every rename target is a real 2.4 name, and every renamed name is gone from 2.4
    for old, (new, _note) in d.RENAMED_IN_24.items():
        assert old not in known.SETTINGS['16'], old
        assert new is None or new in known.SETTINGS['16'], new


@pytest.mark.parametrize('image,line', [
    ('ghcr.io/docker-mailserver/docker-mailserver:15.1.0', '15'),
    ('ghcr.io/docker-mailserver/docker-mailserver:v16.0.1', '16'),
    ('docker-mailserver:16', '16'),
    ('mailserver/docker-mailserver:15.1', '15'),
    ('localhost:5000/docker-mailserver:16.0.1', '16'),
    ('dms-test:16', '16'),
])
def test_line_from_tag(image, line):
    assert release_line(image) == (line, '')


@pytest.mark.parametrize('image,needle', [
    ('ghcr.io/docker-mailserver/docker-mailserver:edge', 'set dms_release_line'),
    ('dms-test:local', 'set dms_release_line'),
    ('localhost:5000/docker-mailserver', 'set dms_release_line'),
    ('docker-mailserver@sha256:' + 'a' * 64, 'set dms_release_line'),
    ('docker-mailserver:161', 'set dms_release_line'),
    ('docker-mailserver:14.0.0', 'not supported'),
    ('docker-mailserver:v13', 'not supported'),
])
def test_line_not_read_from_tag(image, needle):
    line, error = release_line(image)
    assert line is None and needle in error


def test_explicit_line_wins_and_is_checked():
    assert release_line('dms-test:local', '15') == ('15', '')
    assert release_line('x:16.0.1', '15') == ('15', '')
    line, error = release_line('x:16', '17')
    assert line is None and 'dms_release_line' in error


def test_image_tag():
    assert image_tag('localhost:5000/a/b:1.2') == '1.2'
    assert image_tag('localhost:5000/a/b') == ''


def test_booleans_are_fine_now_that_dms_config_writes_them_as_yes_or_no():
    assert d.value_problems("auth_allow_cleartext", True, "16") == []
