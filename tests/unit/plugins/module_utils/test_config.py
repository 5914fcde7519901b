# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the dms_config logic (plugins/module_utils/_config.py) against real temp config dirs.

The programs of the managed host are replaced by :class:`FakeTools` here; tests/integration/test_dms_config.py runs
the real postconf, doveconf and bash.
"""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _config
from ansible_collections.dms.mailserver.plugins.module_utils._common import mode_diffs
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

SECRET = 'Unit-Config-Secret-4d1c'


class FakeTools(_config.Tools):
    """No program installed unless given: ``programs`` maps a name to a function(args) -> (rc, out, err)."""

    def __init__(self, **programs):
        self.programs = programs
        self.calls = []
        super().__init__(self._find, self._run)

    def _find(self, name):
        return '/usr/bin/%s' % name if name in self.programs else None

    def _run(self, args, data=None):
        self.calls.append(list(args))
        return self.programs[os.path.basename(args[0])](args)


def params(**kwargs):
    base = dict(file=None, settings=None, services=None, sections=None, content=None, state='present',
                exclusive=False, force=False, mode=None, no_log_content=False, release_line=None)
    base.update(kwargs)
    return base


def apply(config_dir, check=False, tools=None, **kwargs):
    """normalize + plan + commit as the module does; returns (result, changed_files, diff, warnings)."""
    request, warnings = _config.normalize(params(**kwargs))
    with ConfigDir(str(config_dir), check_mode=check) as cfg:
        result = _config.plan(cfg, request, tools or FakeTools())
        fixes = result.pop('_mode_fixes')
        warnings = warnings + result.pop('_warnings')
        diff = cfg.diff() + mode_diffs(cfg, fixes)
        changed, dummy = cfg.commit(extra_mode_fixes=fixes)
    return result, changed, diff, warnings


def tree(config_dir):
    out = {}
    for root, dummy, files in os.walk(str(config_dir)):
        for name in files:
            path = os.path.join(root, name)
            with open(path, 'rb') as handle:
                out[os.path.relpath(path, str(config_dir))] = (handle.read(), stat.S_IMODE(os.stat(path).st_mode))
    return out


def read(config_dir, name):
    path = os.path.join(str(config_dir), name)
    if not os.path.exists(path):
        return None
    with open(path, 'rb') as handle:
        return handle.read().decode()


def write(config_dir, name, text, mode=0o644):
    path = os.path.join(str(config_dir), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(text.encode())
    os.chmod(path, mode)


# -- which file, and how DMS applies it -----------------------------------------------------------


@pytest.mark.parametrize('name, kind, when, mode', [
    ('postfix-main.cf', 'postfix_main', 'start', 0o644),
    ('postfix-master.cf', 'postfix_master', 'start', 0o644),
    ('dovecot.cf', 'dovecot', 'start', 0o644),
    ('user-patches.sh', 'content', 'start', 0o755),
    ('fail2ban-jail.cf', 'content', 'start', 0o644),
    ('amavis.cf', 'content', 'start', 0o644),
    ('whitelist_clients.local', 'content', 'start', 0o644),
    ('rspamd/custom-commands.conf', 'content', 'change_detector', 0o644),
    ('rspamd/override.d/actions.conf', 'rspamd_override', 'change_detector', 0o644),
    ('rspamd/override.d/worker-controller.inc', 'rspamd_override', 'change_detector', 0o644),
])
def test_file_catalog(name, kind, when, mode):
    assert _config.file_info(name) == (name, kind, when, mode)


@pytest.mark.parametrize('name', [
    'rspamd/override.d/../../../etc/passwd.conf', 'rspamd/override.d/../x.conf', 'rspamd/override.d/.hidden.conf',
    'rspamd/override.d/a/b.conf', 'rspamd/override.d/x.sh', 'rspamd/override.d/', 'postfix-accounts.cf',
    '../postfix-main.cf', '/etc/postfix/main.cf', 'rspamd/override.d/a..conf',
])
def test_file_names_outside_the_catalog_are_refused(name):
    with pytest.raises(ValidationError, match='^file: '):
        _config.file_info(name)


def test_restart_required_and_applies_live_follow_dms(tmp_path):
    result, changed, dummy, dummy2 = apply(tmp_path, file='postfix-main.cf', settings={'smtputf8_enable': False})
    assert (result['restart_required'], result['applies_live'], changed) == (True, False, ['postfix-main.cf'])
    result, changed, dummy, dummy2 = apply(tmp_path, file='postfix-main.cf', settings={'smtputf8_enable': False})
    assert (result['restart_required'], result['applies_live'], changed) == (False, False, [])
    result, changed, dummy, dummy2 = apply(tmp_path, file='rspamd/custom-commands.conf',
                                           content='set-option-for-module actions add_header 7\n')
    assert (result['restart_required'], result['applies_live'], changed) == (False, True,
                                                                             ['rspamd/custom-commands.conf'])


# -- settings files --------------------------------------------------------------------------------


def test_settings_keep_hand_written_lines_and_null_removes(tmp_path):
    write(tmp_path, 'postfix-main.cf', '# by hand\nsmtpd_banner = $myhostname ESMTP\nmessage_size_limit = 1\n')
    apply(tmp_path, file='postfix-main.cf', settings={
        'message_size_limit': 52428800, 'smtputf8_enable': False, 'mynetworks': ['127.0.0.0/8', '192.0.2.0/24']})
    assert read(tmp_path, 'postfix-main.cf') == ('# by hand\nsmtpd_banner = $myhostname ESMTP\n'
                                                 'message_size_limit = 52428800\nsmtputf8_enable = no\n'
                                                 'mynetworks = 127.0.0.0/8, 192.0.2.0/24\n')
    apply(tmp_path, file='postfix-main.cf', settings={'message_size_limit': None})
    assert 'message_size_limit' not in read(tmp_path, 'postfix-main.cf')
    apply(tmp_path, file='postfix-main.cf', state='absent', settings={'smtputf8_enable': 'ignored'})
    assert 'smtputf8_enable' not in read(tmp_path, 'postfix-main.cf')


def test_exclusive_drops_everything_else_and_an_emptied_file_is_removed(tmp_path):
    write(tmp_path, 'postfix-main.cf', '# by hand\nsmtpd_banner = x\n')
    apply(tmp_path, file='postfix-main.cf', exclusive=True, settings={'smtputf8_enable': False})
    assert read(tmp_path, 'postfix-main.cf') == 'smtputf8_enable = no\n'
    result, changed, dummy, dummy2 = apply(tmp_path, file='postfix-main.cf', settings={'smtputf8_enable': None})
    assert read(tmp_path, 'postfix-main.cf') is None
    assert changed == ['postfix-main.cf'] and result['restart_required'] is True


def test_state_absent_without_keys_removes_the_file(tmp_path):
    write(tmp_path, 'postfix-master.cf', 'smtp/inet/postscreen_upstream_proxy_protocol=haproxy\n')
    apply(tmp_path, file='postfix-master.cf', state='absent')
    assert read(tmp_path, 'postfix-master.cf') is None


def test_check_mode_predicts_exactly_and_writes_nothing_then_the_second_run_is_byte_identical(tmp_path):
    write(tmp_path, 'dovecot.cf', '# mine\nmail_max_userip_connections = 10\n')
    args = dict(file='dovecot.cf', release_line='16', settings={'mail_max_userip_connections': 50},
                sections={'service imap-login': {'inet_listener imap': {'haproxy': True}}})
    before = tree(tmp_path)
    checked, check_changed, check_diff, dummy = apply(tmp_path, check=True, **args)
    assert tree(tmp_path) == before
    real, real_changed, real_diff, dummy = apply(tmp_path, **args)
    assert (checked, check_changed, check_diff) == (real, real_changed, real_diff)
    assert real_changed == ['dovecot.cf'] and real['restart_required'] is True
    assert real_diff[0]['after'] == read(tmp_path, 'dovecot.cf')
    after = tree(tmp_path)
    again, again_changed, again_diff, dummy = apply(tmp_path, **args)
    assert (again_changed, again_diff, again['restart_required']) == ([], [], False)
    assert tree(tmp_path) == after


def test_diff_masks_secret_keys_and_no_log_content_masks_everything(tmp_path):
    dummy, dummy2, diff, dummy3 = apply(tmp_path, file='postfix-main.cf',
                                        settings={'smtp_sasl_password_maps': 'texthash:/x', 'my_token': SECRET})
    assert SECRET not in repr(diff) and '<secret #1 masked>' in diff[0]['after']
    dummy, dummy2, diff, dummy3 = apply(tmp_path, file='amavis.cf', content='$x = "%s";\n1;\n' % SECRET,
                                        no_log_content=True, mode='0600')
    assert SECRET not in repr(diff) and diff[0]['after'] == '<content masked (no_log_content): 2 lines>\n'
    assert stat.S_IMODE(os.stat(str(tmp_path / 'amavis.cf')).st_mode) == 0o600
    assert SECRET in _config.secret_values(params(settings={'db_password': SECRET}))
    assert 'a ' + SECRET in _config.secret_values(params(content='a %s\n' % SECRET, no_log_content=True))


def test_user_patches_is_0755_and_a_mode_is_corrected_without_a_restart(tmp_path):
    apply(tmp_path, file='user-patches.sh', content='#!/bin/bash\necho hi')
    assert read(tmp_path, 'user-patches.sh') == '#!/bin/bash\necho hi\n'
    assert stat.S_IMODE(os.stat(str(tmp_path / 'user-patches.sh')).st_mode) == 0o755
    os.chmod(str(tmp_path / 'user-patches.sh'), 0o600)
    result, changed, dummy, dummy2 = apply(tmp_path, file='user-patches.sh', content='#!/bin/bash\necho hi\n')
    assert changed == ['user-patches.sh'] and result['restart_required'] is False
    assert stat.S_IMODE(os.stat(str(tmp_path / 'user-patches.sh')).st_mode) == 0o755


# -- guards ---------------------------------------------------------------------------------------


RECEIVE = 'check_recipient_access texthash:/tmp/docker-mailserver/postfix-receive-access.cf'
SEND = 'check_sender_access texthash:/tmp/docker-mailserver/postfix-send-access.cf'


@pytest.mark.parametrize('key, value, ok', [
    ('smtpd_recipient_restrictions', 'permit_mynetworks, reject_unauth_destination', False),
    ('smtpd_recipient_restrictions', RECEIVE + ', permit_mynetworks, reject_unauth_destination', True),
    ('smtpd_recipient_restrictions', [RECEIVE, 'permit_mynetworks'], True),
    ('smtpd_sender_restrictions', 'permit_mynetworks, reject_unknown_sender_domain', False),
    ('smtpd_sender_restrictions', 'reject_non_fqdn_sender, $dms_smtpd_sender_restrictions', True),
    ('smtpd_sender_restrictions', '${dms_smtpd_sender_restrictions}', True),
    ('dms_smtpd_sender_restrictions', 'permit_sasl_authenticated, reject_unknown_sender_domain', False),
    ('dms_smtpd_sender_restrictions', SEND + ', permit_sasl_authenticated', True),
    ('mua_sender_restrictions', 'reject_authenticated_sender_login_mismatch', False),
    ('mua_sender_restrictions', 'reject_authenticated_sender_login_mismatch, $dms_smtpd_sender_restrictions', True),
    ('smtpd_helo_restrictions', 'permit', True),
])
def test_restriction_guard(key, value, ok):
    args = dict(file='postfix-main.cf', settings={key: value})
    if ok:
        _config.normalize(params(**args))
        return
    with pytest.raises(ValidationError) as exc:
        _config.normalize(params(**args))
    assert str(exc.value).startswith('settings.%s: refused' % key)
    assert 'force=true' in str(exc.value)
    dummy, warnings = _config.normalize(params(force=True, **args))
    assert any('written with force=true' in w for w in warnings)


def test_removing_a_guarded_key_is_always_allowed():
    _config.normalize(params(file='postfix-main.cf', settings={'smtpd_recipient_restrictions': None}))


@pytest.mark.parametrize('key, value, ok', [
    ('submission/inet/smtpd_sender_restrictions', 'permit_sasl_authenticated,reject', False),
    ('submission/inet/smtpd_sender_restrictions', '$mua_sender_restrictions', True),
    ('smtp/inet/smtpd_recipient_restrictions', 'permit_mynetworks,reject', False),
    ('smtp/inet/smtpd_recipient_restrictions', '$smtpd_recipient_restrictions', True),
    ('smtp/inet/postscreen_upstream_proxy_protocol', 'haproxy', True),
])
def test_master_restriction_guard(key, value, ok):
    args = dict(file='postfix-master.cf', services={key: value})
    if ok:
        _config.normalize(params(**args))
    else:
        with pytest.raises(ValidationError, match='^services.%s: refused' % key):
            _config.normalize(params(**args))


def test_unknown_master_service_needs_force():
    with pytest.raises(ValidationError, match='has no service nosuch/inet'):
        _config.normalize(params(file='postfix-master.cf', services={'nosuch/inet/x': 'y'}))
    dummy, warnings = _config.normalize(params(file='postfix-master.cf', force=True, services={'nosuch/inet/x': 'y'}))
    assert warnings


def test_a_hook_to_a_missing_table_is_warned_about(tmp_path):
    dummy, dummy2, dummy3, warnings = apply(tmp_path, file='postfix-main.cf',
                                            settings={'smtpd_recipient_restrictions': [RECEIVE, 'permit']})
    assert any('postfix-receive-access.cf, which does not exist' in w for w in warnings)
    assert any('policy services' in w for w in warnings)


# -- Dovecot release lines ------------------------------------------------------------------------


DOVECOT_23_ONLY = dict(settings={'disable_plaintext_auth': 'no', 'mail_location': 'maildir:/var/mail/%d/%n'},
                       sections={'plugin': {'quota_grace': '10%%'}})
DOVECOT_24_ONLY = dict(settings={'auth_allow_cleartext': True, 'mail_path': '/var/mail/%{user | domain}'},
                       sections={'sieve_script personal': {'path': '~/.dovecot.sieve'}})


def test_a_dovecot_23_file_is_refused_for_16_and_accepted_for_15_1(tmp_path):
    with pytest.raises(ValidationError, match='Dovecot 2.4'):
        _config.normalize(params(file='dovecot.cf', release_line='16', **DOVECOT_23_ONLY))
    apply(tmp_path, file='dovecot.cf', release_line='15.1', **DOVECOT_23_ONLY)
    assert 'disable_plaintext_auth = no' in read(tmp_path, 'dovecot.cf')


def test_a_dovecot_24_file_is_refused_for_15_1_and_accepted_for_16(tmp_path):
    with pytest.raises(ValidationError, match='Dovecot 2.3|DMS 15'):
        _config.normalize(params(file='dovecot.cf', release_line='15.1', **DOVECOT_24_ONLY))
    apply(tmp_path, file='dovecot.cf', release_line='16', **DOVECOT_24_ONLY)
    assert 'sieve_script personal {' in read(tmp_path, 'dovecot.cf')


def test_each_dovecot_24_refusal_names_its_part():
    with pytest.raises(ValidationError, match=r'^sections.plugin: Dovecot 2.4 \(DMS 16\) has no plugin section'):
        _config.normalize(params(file='dovecot.cf', release_line='16', sections={'plugin': {'a': 1}}))
    with pytest.raises(ValidationError, match='short variable'):
        _config.normalize(params(file='dovecot.cf', release_line='16',
                                 sections={'service imap': {'x': '/var/mail/%d'}}))
    with pytest.raises(ValidationError, match='^release_line: is required'):
        _config.normalize(params(file='dovecot.cf', settings={'mail_max_userip_connections': 1}))
    with pytest.raises(ValidationError, match='^release_line: '):
        _config.normalize(params(file='dovecot.cf', release_line='14', settings={}))


@pytest.mark.parametrize('line, header, ok', [
    ('16', 'passdb', False), ('15.1', 'passdb', True), ('16', 'passdb passwd-file', True),
    ('15.1', 'service', False), ('16', 'sieve_script', False), ('16', 'mail_plugins', True),
    ('15.1', 'mail_plugins', False), ('15.1', 'plugin', True),
])
def test_dovecot_section_types_and_names_per_line(line, header, ok):
    args = dict(file='dovecot.cf', release_line=line, sections={header: {'driver': 'x'}})
    if ok:
        _config.normalize(params(**args))
    else:
        with pytest.raises(ValidationError, match='^sections.%s: ' % header):
            _config.normalize(params(**args))


def test_doveconf_runs_only_when_the_host_dovecot_is_the_lines(tmp_path):
    def doveconf(args):
        if args[-2].endswith('empty.conf'):
            return 0, '# 2.3.19.1 (9b53102964): x\n', ''
        return 89, '', 'doveconf: Fatal: Error in configuration file /x/dovecot.cf line 1: Unknown setting: foo'
    tools = FakeTools(doveconf=doveconf)
    with pytest.raises(ValidationError, match='^dovecot.cf: Dovecot 2.3.s doveconf refuses it: .*Unknown setting'):
        apply(tmp_path, tools=tools, file='dovecot.cf', release_line='15.1',
              settings={'mail_max_userip_connections': 5})
    assert read(tmp_path, 'dovecot.cf') is None
    tools = FakeTools(doveconf=doveconf)
    dummy, dummy2, dummy3, warnings = apply(tmp_path, tools=tools, file='dovecot.cf', release_line='16',
                                            settings={'mail_max_userip_connections': 5})
    assert len(tools.calls) == 1 and any('generated setting lists of Dovecot 2.4' in w for w in warnings)


# -- tools on the managed host ------------------------------------------------------------------


def test_postconf_refusal_leaves_the_file_and_names_postconf(tmp_path):
    write(tmp_path, 'postfix-main.cf', 'junk line without equals\n')
    tools = FakeTools(postconf=lambda args: (1, '', 'postconf: fatal: %s/main.cf, line 1: missing \'=\'' % args[2]))
    with pytest.raises(ValidationError, match="^settings: postconf refuses .*main.cf, line 1: missing '='"):
        apply(tmp_path, tools=tools, file='postfix-main.cf', settings={'smtputf8_enable': False})
    assert read(tmp_path, 'postfix-main.cf') == 'junk line without equals\n'


def test_postfix_booleans_must_be_yes_or_no():
    with pytest.raises(ValidationError, match='not a Postfix boolean'):
        _config.check_postfix_values([('smtputf8_enable', 'False', 'settings.smtputf8_enable')],
                                     {'smtputf8_enable': 'yes'}, [])


def test_postconf_P_never_gets_a_secret_on_its_command_line(tmp_path):
    tools = FakeTools(postconf=lambda args: (0, '', ''))
    dummy, dummy2, dummy3, warnings = apply(tmp_path, tools=tools, file='postfix-master.cf', services={
        'smtp/unix/smtp_sasl_password_maps': 'texthash:/%s' % SECRET, 'smtp/inet/postscreen_upstream_proxy_protocol':
        'haproxy'})
    assert [call[-1] for call in tools.calls] == ['smtp/inet/postscreen_upstream_proxy_protocol=haproxy']
    assert not any(SECRET in ' '.join(call) for call in tools.calls)
    assert any('not checked with postconf -P' in w for w in warnings)


def test_bash_syntax_error_is_refused(tmp_path):
    tools = FakeTools(bash=lambda args: (2, '', '%s: line 2: syntax error: unexpected end of file' % args[-1]))
    with pytest.raises(ValidationError, match='^content: bash -n finds a syntax error.*line 2'):
        apply(tmp_path, tools=tools, file='user-patches.sh', content='if true; then\n')
    assert read(tmp_path, 'user-patches.sh') is None


# -- content checks -------------------------------------------------------------------------------


@pytest.mark.parametrize('name, content, words', [
    ('rspamd/override.d/actions.conf', 'reject = 15;\nadd_header = {\n', 'not valid Rspamd UCL'),
    ('rspamd/custom-commands.conf', 'frobnicate-module x\n', 'not a command'),
    ('rspamd/custom-commands.conf', 'set-option-for-module classifier-bayes\n', 'takes 3'),
    ('rspamd/custom-commands.conf', 'add-line ../../../etc/cron.d/x * * * * * root id\n', 'must not contain "/"'),
    ('rspamd/custom-commands.conf', 'set-common-option\n', 'takes 2'),
    ('rspamd/custom-commands.conf', 'set-option-for-controller secure_ip\n', 'takes 2'),
    ('rspamd/custom-commands.conf', 'enable-module\n', 'takes 1'),
    ('rspamd/custom-commands.conf', 'set-option-for-module actions add.header 7\n', 'regular expression'),
    ('rspamd/custom-commands.conf', 'set-common-option dns_timeout 1s|2s\n', "'|'"),
    ('rspamd/custom-commands.conf', 'set-option-for-module multimap x "a&b"\n', "'&'"),
    ('rspamd/custom-commands.conf', 'set-option-for-module actions reject "15\n', 'not valid Rspamd UCL'),
    ('rspamd/custom-commands.conf', 'add-line multimap.conf FOO {\n', 'override.d/multimap.conf'),
    ('fail2ban-jail.cf', 'ignoreip = 192.0.2.1\n', 'INI'),
    ('amavis.cf', 'a\r\nb\n', 'carriage return'),
    ('spamassassin-rules.cf', 'score X \x00 1\n', 'NUL'),
    ('whitelist_clients.local', 'a\udcff\n', 'UTF-8'),
])
def test_content_checks(name, content, words):
    with pytest.raises(ValidationError, match=words):
        _config.normalize(params(file=name, content=content))


def test_options_that_do_not_fit_the_file_are_refused():
    with pytest.raises(ValidationError, match='^services: has no meaning for postfix-main.cf'):
        _config.normalize(params(file='postfix-main.cf', services={'a/inet/b': 1}))
    with pytest.raises(ValidationError, match='^content: has no meaning for dovecot.cf'):
        _config.normalize(params(file='dovecot.cf', content='x', release_line='16'))
    with pytest.raises(ValidationError, match='^exclusive: '):
        _config.normalize(params(file='amavis.cf', content='1;', exclusive=True))
    with pytest.raises(ValidationError, match='^file: .*dms_dkim'):
        _config.normalize(params(file='rspamd/override.d/dkim_signing.conf', content='enabled = true;'))
    for mode in ('rw-r--r--', 600, '4755', True):
        with pytest.raises(ValidationError, match='^mode: '):
            _config.normalize(params(file='amavis.cf', content='1;', mode=mode))
    assert _config.parse_mode(0o600, 0o644) == (0o600, True)
    assert _config.parse_mode('0640', 0o644) == (0o640, True)


@pytest.mark.parametrize('default, boolean', [
    ('yes', True), ('no', True), ('${{$compatibility_level} <level {1} ? {no} : {yes}}', True),
    ('10240000', False), ('$myhostname ESMTP $mail_name', False), ('', False), (None, False),
])
def test_postfix_boolean_defaults_include_compatibility_level_choices(default, boolean):
    assert _config._boolean_default(default) is boolean


def test_secret_values_of_content_keys_are_hidden_from_the_output():
    found = _config.secret_values(params(content='password = "%s";\nother = visible-value\n' % SECRET))
    assert SECRET in found and not any('visible' in value for value in found)


# -- Rspamd custom commands: DMS's model ------------------------------------------------------------


def test_custom_commands_are_read_as_dms_reads_them():
    text = '# comment\n  \n\tset-common-option  dns_timeout   2s   # not a comment\nadd-line a.conf x\n'
    assert _config.custom_commands(text) == [
        (3, 'set-common-option', ['dns_timeout', '2s', '# not a comment']),
        (4, 'add-line', ['a.conf', 'x', '']),
    ]


def test_custom_commands_change_override_files_as_dms_does():
    lines = _config.custom_commands(
        'set-option-for-module actions add_header 7\n'      # appended
        'set-option-for-module actions reject 20\n'         # replaces the line of the volume's file
        'set-option-for-controller secure_ip "192.0.2.1"\n'
        'set-common-option dns_max_requests\n'              # value "": DMS writes "dns_max_requests = ;"
        'add-line actions.conf # end\n'                      # "# end", and a blank when there is no third word
        'add-line groups.conf x\n'
        'disable-module neural\n')
    files = {'actions.conf': 'reject = 15;\n  rewrite_subject = 9;\n'}
    started = _config.simulate_custom_commands(dict(files), lines, live=False)
    assert started == {
        'actions.conf': 'reject = 20;\n  rewrite_subject = 9;\nadd_header = 7;\n# end\n',
        'worker-controller.inc': 'secure_ip = "192.0.2.1";\n',
        'options.inc': 'dns_max_requests = ;\n',
        'groups.conf': 'x \n',
        'neural.conf': 'enabled = false;\n',
    }
    # The change detector cannot run enable-module / disable-module (DMS: "command not found").
    assert 'neural.conf' not in _config.simulate_custom_commands(dict(files), lines, live=True)


@pytest.mark.parametrize('before, after, restart', [
    (None, 'set-option-for-module actions add_header 7\n', False),
    ('set-option-for-module actions add_header 7\n', 'set-option-for-module actions add_header 8\n', False),
    ('set-option-for-module actions add_header 7\n',
     'set-option-for-module actions add_header 7\nset-common-option dns_timeout 2s\n', False),
    # A removed command keeps its effect in the running container.
    ('set-option-for-module actions add_header 7\nset-common-option dns_timeout 2s\n',
     'set-option-for-module actions add_header 7\n', True),
    ('set-option-for-module actions add_header 7\n', None, True),
    # add-line runs again on every change: its line would be there twice.
    ('add-line actions.conf # one\n', 'add-line actions.conf # one\nset-common-option dns_timeout 2s\n', True),
    (None, 'add-line actions.conf # one\n', False),
    # enable-module / disable-module: only a new container runs them.
    (None, 'disable-module neural\n', True),
    ('disable-module neural\n', 'disable-module neural\nset-common-option dns_timeout 2s\n', False),
])
def test_custom_commands_ask_for_a_new_container_when_dms_cannot_apply_them_live(tmp_path, before, after, restart):
    if before is not None:
        write(tmp_path, 'rspamd/custom-commands.conf', before)
    result, changed, dummy, dummy2 = apply(tmp_path, file='rspamd/custom-commands.conf', content=after,
                                           state='present' if after is not None else 'absent')
    assert changed == ['rspamd/custom-commands.conf']
    assert result['applies_live'] is True
    assert result['restart_required'] is restart


def test_an_override_change_asks_for_a_new_container_when_it_wipes_custom_command_results(tmp_path):
    result, dummy, dummy2, dummy3 = apply(tmp_path, file='rspamd/override.d/actions.conf', content='reject = 15;\n')
    assert result['restart_required'] is False
    write(tmp_path, 'rspamd/custom-commands.conf', 'set-common-option dns_timeout 2s\n')
    # DMS empties /etc/rspamd/override.d and copies the volume's files: options.inc of the command is gone.
    result, dummy, dummy2, dummy3 = apply(tmp_path, file='rspamd/override.d/actions.conf', content='reject = 16;\n')
    assert result['restart_required'] is True
    # A removed override goes unnoticed by DMS's change detector.
    os.remove(os.path.join(str(tmp_path), 'rspamd/custom-commands.conf'))
    result, dummy, dummy2, dummy3 = apply(tmp_path, file='rspamd/override.d/actions.conf', state='absent')
    assert result['restart_required'] is True
    result, dummy, dummy2, dummy3 = apply(tmp_path, file='rspamd/override.d/actions.conf', content='reject = 17;\n')
    assert result['restart_required'] is False
