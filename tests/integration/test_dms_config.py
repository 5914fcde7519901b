# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_config through real ansible-playbook runs, checked with Debian's Postfix (postconf, postmap), Dovecot 2.3
(doveconf) and bash, applying the files the way DMS's start-up scripts do (setup.d/postfix.sh)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from dmstest import postmap_query, run_play, snapshot

CONTAINER_CONFIG = '/tmp/docker-mailserver'

# The restriction lines of DMS's main.cf (target/postfix/main.cf, the same at v15.1.0 and v16): facts, so the
# scratch Postfix config below is what DMS starts from.
DMS_MAIN_CF = '''compatibility_level = 3.6
smtpd_recipient_restrictions = permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination, \
reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, reject_unknown_recipient_domain
smtpd_sender_restrictions = $dms_smtpd_sender_restrictions
dms_smtpd_sender_restrictions = permit_sasl_authenticated, permit_mynetworks, reject_unknown_sender_domain
mua_sender_restrictions = reject_authenticated_sender_login_mismatch, $dms_smtpd_sender_restrictions
'''
# The services of DMS's master.cf the tests override.
DMS_MASTER_CF = '''smtp      inet  n       -       n       -       1       postscreen
smtpd     pass  -       -       n       -       -       smtpd
submission inet n       -       n       -       -       smtpd
  -o smtpd_sender_restrictions=$mua_sender_restrictions
submissions inet n      -       n       -       -       smtpd
  -o smtpd_sender_restrictions=$mua_sender_restrictions
'''


def config(config_dir, **args):
    return {'name': 'dms_config', 'dms.mailserver.dms_config': dict(config_dir=str(config_dir), **args)}


def postconf(*args):
    proc = subprocess.run(['postconf'] + list(args), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dms_postfix(tmp_path, config_dir):
    """A scratch /etc/postfix after DMS's start-up: its main.cf and master.cf, the restriction-table hooks
    prepended when the tables exist (setup.d/postfix.sh), then postfix-master.cf through postconf -P and
    postfix-main.cf appended and rewritten with postconf -n (__postfix__setup_override_configuration)."""
    etc = Path(tmp_path) / 'etc-postfix'
    if etc.exists():
        shutil.rmtree(str(etc))
    etc.mkdir()
    main = DMS_MAIN_CF
    if (Path(config_dir) / 'postfix-send-access.cf').exists():
        main = re.sub(r'(?m)^(dms_smtpd_sender_restrictions =)',
                      r'\1 check_sender_access texthash:%s/postfix-send-access.cf,' % config_dir, main)
    if (Path(config_dir) / 'postfix-receive-access.cf').exists():
        main = re.sub(r'(?m)^(smtpd_recipient_restrictions =)',
                      r'\1 check_recipient_access texthash:%s/postfix-receive-access.cf,' % config_dir, main)
    (etc / 'main.cf').write_text(main)
    (etc / 'master.cf').write_text(DMS_MASTER_CF)
    master = Path(config_dir) / 'postfix-master.cf'
    if master.exists():
        for line in master.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith('#') and re.match(r'^[0-9a-z]', line):
                postconf('-c', str(etc), '-P', line)
    override = Path(config_dir) / 'postfix-main.cf'
    if override.exists():
        with open(str(etc / 'main.cf'), 'a') as handle:
            handle.write(override.read_text())
        (etc / 'main.cf').write_text(postconf('-c', str(etc), '-n'))
    return etc


def effective(etc, name):
    """A parameter's value with every $reference expanded, as Postfix uses it."""
    return postconf('-c', str(etc), '-x', '-h', name).strip()


def hook_paths(config_dir):
    # DMS's hook names the container path; the scratch config uses the host path of the same files.
    return ('check_sender_access texthash:%s/postfix-send-access.cf' % config_dir,
            'check_recipient_access texthash:%s/postfix-receive-access.cf' % config_dir)


def test_the_restriction_guard_is_what_keeps_restrict_send_enforced(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [{'name': 'account', 'dms.mailserver.dms_account': dict(
        config_dir=str(cfg), address='alice@example.com', password='Guard-Test-pw-1', restrict=['send'])}])
    assert not play.failed, play.stdout + play.stderr
    send_hook, dummy = hook_paths(cfg)
    assert postmap_query('alice@example.com', 'texthash:%s' % (cfg / 'postfix-send-access.cf')) == 'REJECT'
    # Without an override, DMS enforces restrict: [send] on port 25 and on 587/465.
    etc = dms_postfix(tmp_path, cfg)
    assert send_hook in effective(etc, 'smtpd_sender_restrictions')
    assert send_hook in effective(etc, 'mua_sender_restrictions')

    # The override a user might write is refused, and nothing is written.
    before = snapshot(cfg)
    plain = 'permit_sasl_authenticated, permit_mynetworks, reject_unknown_sender_domain, reject_non_fqdn_sender'
    play = run_play(tmp_path, [dict(config(cfg, file='postfix-main.cf',
                                           settings={'smtpd_sender_restrictions': plain}), ignore_errors=True)])
    assert play.result['failed'] is True
    assert play.result['msg'].startswith('settings.smtpd_sender_restrictions: refused')
    assert snapshot(cfg) == before

    # Forced, it is written - and Postfix's effective sender restrictions no longer hold DMS's hook: a
    # restrict: [send] account could send again. This is what the guard prevents.
    play = run_play(tmp_path, [config(cfg, file='postfix-main.cf', force=True,
                                      settings={'smtpd_sender_restrictions': plain})])
    assert not play.failed, play.stdout + play.stderr
    etc = dms_postfix(tmp_path, cfg)
    assert send_hook not in effective(etc, 'smtpd_sender_restrictions')

    # A value that keeps $dms_smtpd_sender_restrictions passes the guard and keeps the hook.
    play = run_play(tmp_path, [config(cfg, file='postfix-main.cf', settings={
        'smtpd_sender_restrictions': ['reject_non_fqdn_sender', '$dms_smtpd_sender_restrictions']})])
    assert not play.failed, play.stdout + play.stderr
    etc = dms_postfix(tmp_path, cfg)
    assert effective(etc, 'smtpd_sender_restrictions').startswith('reject_non_fqdn_sender, ' + send_hook)


def test_the_recipient_guard_against_real_postconf(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [{'name': 'account', 'dms.mailserver.dms_account': dict(
        config_dir=str(cfg), address='bob@example.com', password='Guard-Test-pw-2', restrict=['receive'])}])
    assert not play.failed, play.stdout + play.stderr
    dummy, receive_hook = hook_paths(cfg)
    plain = 'permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination'
    play = run_play(tmp_path, [config(cfg, file='postfix-main.cf', force=True,
                                      settings={'smtpd_recipient_restrictions': plain})])
    assert not play.failed
    assert receive_hook not in effective(dms_postfix(tmp_path, cfg), 'smtpd_recipient_restrictions')
    kept = 'check_recipient_access texthash:%s/postfix-receive-access.cf, %s' % (CONTAINER_CONFIG, plain)
    play = run_play(tmp_path, [config(cfg, file='postfix-main.cf', settings={'smtpd_recipient_restrictions': kept})])
    assert not play.failed, play.stdout + play.stderr
    assert effective(dms_postfix(tmp_path, cfg), 'smtpd_recipient_restrictions').startswith(
        'check_recipient_access texthash:%s/postfix-receive-access.cf' % CONTAINER_CONFIG)


def test_postfix_files_applied_as_dms_does_give_the_values_check_and_diff_predict_and_rerun_is_identical(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / 'postfix-main.cf').write_text('# written by hand\nsmtpd_banner = $myhostname ESMTP\n')
    tasks = [
        config(cfg, file='postfix-main.cf', settings={
            'smtputf8_enable': False, 'message_size_limit': 52428800, 'mynetworks': ['127.0.0.0/8', '192.0.2.0/24']}),
        config(cfg, file='postfix-master.cf', services={
            'smtp/inet/postscreen_upstream_proxy_protocol': 'haproxy',
            'submission/inet/smtpd_upstream_proxy_protocol': 'haproxy'}),
    ]
    before = snapshot(cfg)
    check = run_play(tmp_path, tasks, check=True, diff=True)
    assert not check.failed, check.stdout + check.stderr
    assert snapshot(cfg) == before
    real = run_play(tmp_path, tasks, diff=True)
    assert not real.failed, real.stdout + real.stderr
    for predicted, done in zip(check.tasks, real.tasks):
        for key in ('changed', 'changed_files', 'diff', 'restart_required', 'applies_live'):
            assert predicted[key] == done[key], key
        assert done['restart_required'] is True and done['applies_live'] is False
    etc = dms_postfix(tmp_path, cfg)
    assert postconf('-c', str(etc), '-h', 'smtputf8_enable').strip() == 'no'
    assert postconf('-c', str(etc), '-h', 'mynetworks').strip() == '127.0.0.0/8, 192.0.2.0/24'
    assert postconf('-c', str(etc), '-h', 'smtpd_banner').strip() == '$myhostname ESMTP'
    assert postconf('-c', str(etc), '-P', 'smtp/inet/postscreen_upstream_proxy_protocol').strip() == \
        'smtp/inet/postscreen_upstream_proxy_protocol = haproxy'
    after = snapshot(cfg)
    again = run_play(tmp_path, tasks, diff=True)
    assert [t['changed'] for t in again.tasks] == [False, False]
    assert [t['restart_required'] for t in again.tasks] == [False, False]
    assert snapshot(cfg) == after


def test_real_postconf_refuses_a_string_boolean_and_leaves_the_file(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / 'postfix-main.cf').write_text('smtpd_banner = x\n')
    before = snapshot(cfg)
    play = run_play(tmp_path, [dict(config(cfg, file='postfix-main.cf', settings={'smtputf8_enable': 'False'}),
                                    ignore_errors=True)])
    assert play.result['failed'] is True
    assert play.result['msg'].startswith("settings.smtputf8_enable: 'False' is not a Postfix boolean")
    assert snapshot(cfg) == before


DOVECOT_23 = dict(settings={'disable_plaintext_auth': 'no', 'haproxy_trusted_networks': '10.0.0.0/8'},
                  sections={'service imap-login': {'inet_listener imap': {'haproxy': True}},
                            'plugin': {'quota_grace': '10%%'}})


def test_dovecot_23_file_checked_by_the_hosts_doveconf_for_15_1_and_refused_for_16(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [config(cfg, file='dovecot.cf', release_line='15.1', **DOVECOT_23)])
    assert not play.failed, play.stdout + play.stderr
    assert not any('generated setting lists' in w for w in play.result.get('warnings', []))  # doveconf ran
    proc = subprocess.run(['doveconf', '-c', str(cfg / 'dovecot.cf'), '-h', 'haproxy_trusted_networks'],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == '10.0.0.0/8', proc.stderr
    before = snapshot(cfg)
    play = run_play(tmp_path, [dict(config(cfg, file='dovecot.cf', release_line='16', **DOVECOT_23),
                                    ignore_errors=True)])
    assert play.result['failed'] is True and 'Dovecot 2.4' in play.result['msg']
    assert snapshot(cfg) == before


def test_real_doveconf_refuses_an_unknown_setting_inside_a_section(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [dict(config(cfg, file='dovecot.cf', release_line='15.1', sections={
        'service imap-login': {'inet_listener imap': {'haproxyy': True}}}), ignore_errors=True)])
    assert play.result['failed'] is True
    assert re.match(r"dovecot.cf: Dovecot 2.3's doveconf refuses it: .*haproxyy", play.result['msg']), play.result
    assert not (cfg / 'dovecot.cf').exists()


def test_dovecot_24_file_is_refused_for_15_1_and_accepted_for_16_from_the_lists(tmp_path):
    cfg = tmp_path / 'config'
    args = dict(settings={'auth_allow_cleartext': True}, sections={'sieve_script personal': {'path': '/x'}})
    play = run_play(tmp_path, [dict(config(cfg, file='dovecot.cf', release_line='15.1', **args),
                                    ignore_errors=True)])
    assert play.result['failed'] is True and 'DMS 15' in play.result['msg']
    play = run_play(tmp_path, [config(cfg, file='dovecot.cf', release_line='16', **args)])
    assert not play.failed, play.stdout + play.stderr
    assert any('generated setting lists of Dovecot 2.4' in w for w in play.result['warnings'])


def test_bash_n_refuses_a_broken_user_patches_and_a_good_one_is_0755(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [dict(config(cfg, file='user-patches.sh', content='#!/bin/bash\nif true; then\n'),
                                    ignore_errors=True)])
    assert play.result['failed'] is True and play.result['msg'].startswith('content: bash -n finds a syntax error')
    assert not (cfg / 'user-patches.sh').exists()
    play = run_play(tmp_path, [config(cfg, file='user-patches.sh', content='#!/bin/bash\necho ok\n')])
    assert not play.failed
    assert (cfg / 'user-patches.sh').stat().st_mode & 0o777 == 0o755
    assert subprocess.run(['bash', str(cfg / 'user-patches.sh')], capture_output=True, text=True,
                          check=False).stdout == 'ok\n'


def test_secrets_never_reach_the_output(tmp_path):
    cfg = tmp_path / 'config'
    secret = 'Controller-Secret-9e2a71'
    tasks = [
        config(cfg, file='rspamd/override.d/worker-controller.inc', content='password = "%s";\n' % secret,
               mode='0600'),
        config(cfg, file='amavis.cf', content='$secret_thing = "%s";\n1;\n' % secret, no_log_content=True),
    ]
    play = run_play(tmp_path, tasks, check=True, diff=True, verbosity=3, json_output=False)
    assert not play.failed, play.stdout + play.stderr
    assert secret not in play.stdout + play.stderr
    assert '<secret #1 masked>' in play.stdout and 'content masked (no_log_content)' in play.stdout
    play = run_play(tmp_path, tasks, diff=True)
    assert not play.failed, play.stdout + play.stderr
    assert secret not in play.stdout + play.stderr
    assert (cfg / 'rspamd/override.d/worker-controller.inc').stat().st_mode & 0o777 == 0o600
    assert play.tasks[0]['applies_live'] is True and play.tasks[0]['restart_required'] is False


def role_overrides(config_dir, **variables):
    """The mailserver role's override step alone (tasks_from: overrides.yml), no container."""
    base = dict(dms_config_dir=str(config_dir), dms_postfix_main_effective={}, dms_dovecot_conf_effective={},
                dms_config_files=[], dms_line='15', dms_no_log=True)
    base.update(variables)
    role = {'name': 'dms.mailserver.mailserver', 'tasks_from': 'overrides.yml'}
    return {'name': 'overrides', 'ansible.builtin.include_role': role, 'vars': base}


def test_role_records_what_it_manages_removes_it_when_dropped_and_keeps_hand_written_lines(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / 'postfix-main.cf').write_text('# by hand\nsmtpd_banner = $myhostname ESMTP\n')
    files = [{'file': 'fail2ban-jail.cf', 'content': '[DEFAULT]\nignoreip = 127.0.0.1/8 192.0.2.0/24\n'},
             {'file': 'rspamd/custom-commands.conf', 'content': 'set-option-for-module chartable threshold 0.3\n'}]
    first = run_play(tmp_path, [role_overrides(cfg, dms_postfix_main_effective={'smtputf8_enable': False},
                                               dms_dovecot_conf_effective={'recipient_delimiter': '+'},
                                               dms_config_files=files),
                                {'ansible.builtin.debug': {'var': 'dms_config_needs_recreate'}}])
    assert not first.failed, first.stdout + first.stderr
    assert first.result['dms_config_needs_recreate'] is True
    assert (cfg / 'postfix-main.cf').read_text() == \
        '# by hand\nsmtpd_banner = $myhostname ESMTP\nsmtputf8_enable = no\n'
    assert (cfg / 'dovecot.cf').read_text() == 'recipient_delimiter = +\n'
    assert (cfg / 'fail2ban-jail.cf').exists() and (cfg / '.dms-mailserver-role-config.json').exists()

    # The same variables again: nothing changes, no recreate.
    after = snapshot(cfg)
    again = run_play(tmp_path, [role_overrides(cfg, dms_postfix_main_effective={'smtputf8_enable': False},
                                               dms_dovecot_conf_effective={'recipient_delimiter': '+'},
                                               dms_config_files=files),
                                {'ansible.builtin.debug': {'var': 'dms_config_needs_recreate'}}])
    assert not again.failed
    assert again.result['dms_config_needs_recreate'] is False
    assert not any(t.get('changed') for t in again.tasks)
    assert snapshot(cfg) == after

    # Only a live-applied Rspamd file changes (a module option's value, which DMS's change detector sets): no
    # recreate.
    changed_option = {'file': 'rspamd/custom-commands.conf', 'content': 'set-option-for-module chartable threshold 0.5\n'}
    live = run_play(tmp_path, [role_overrides(cfg, dms_postfix_main_effective={'smtputf8_enable': False},
                                              dms_dovecot_conf_effective={'recipient_delimiter': '+'},
                                              dms_config_files=[files[0], changed_option]),
                               {'ansible.builtin.debug': {'var': 'dms_config_needs_recreate'}}])
    assert not live.failed
    assert live.result['dms_config_needs_recreate'] is False

    # Emptied: what the role wrote goes, the hand-written lines stay.
    empty = run_play(tmp_path, [role_overrides(cfg), {'ansible.builtin.debug': {'var': 'dms_config_needs_recreate'}}])
    assert not empty.failed, empty.stdout + empty.stderr
    assert empty.result['dms_config_needs_recreate'] is True
    assert (cfg / 'postfix-main.cf').read_text() == '# by hand\nsmtpd_banner = $myhostname ESMTP\n'
    assert not (cfg / 'dovecot.cf').exists()
    assert not (cfg / 'fail2ban-jail.cf').exists() and not (cfg / 'rspamd/custom-commands.conf').exists()
