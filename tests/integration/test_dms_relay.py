# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_relay through real ansible-playbook runs, checked with Debian's Postfix (postmap) and DMS's own rules."""
from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
from pathlib import Path

from dmstest import postmap_query, run_play, snapshot

RELAYMAP = 'postfix-relaymap.cf'
SASL = 'postfix-sasl-password.cf'
MAILGUN_PW = 'Mailgun-Pw-3b9e1c'
SES_PW = 'Ses-Pw-8d2f7a'
OTHER_PW = 'Other-Pw-5c4e0d'
NEW_PW = 'Rotated-Pw-1a6b2f'
SECRETS = (MAILGUN_PW, SES_PW, OTHER_PW, NEW_PW)

# DMS's rules for postfix-relaymap.cf (dms-behaviour.md §7, helpers/relay.sh):
# _populate_relayhost_map copies only lines with a key AND a value into Postfix's map ...
DMS_RELAY_LINE = r'^\s*[^#[:space:]]\S*\s+\S'


def dms_optout_pattern(domain):
    # ... and _legacy_support treats "^\s*@domain\s*$" as the domain's opt-out.
    return r'^\s*@%s\s*$' % domain.replace('.', r'\.')


def cli_key_lookup(domain):
    # The CLI's existence check: grep -i "^KEY\s" with only "." escaped (db.sh).
    return r'^@%s\s' % domain.replace('.', r'\.')


def grep(args, path):
    """grep's exit status: True when a line matches."""
    proc = subprocess.run(['grep'] + args + [str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def relay(config_dir, name='dms_relay', **args):
    return {'name': name, 'dms.mailserver.dms_relay': dict(config_dir=str(config_dir), **args)}


def read(path):
    return Path(path).read_bytes().decode() if Path(path).exists() else None


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def modes(config_dir):
    return dict((p.name, mode_of(p)) for p in Path(config_dir).iterdir() if p.is_file())


def test_postmap_finds_relays_and_credentials_and_dms_sees_the_optout(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [relay(cfg, relays=[
        {'domain': 'example.com', 'host': 'smtp.mailgun.org', 'port': 587,
         'username': 'postmaster@mg.example.com', 'password': MAILGUN_PW},
        {'domain': 'example.org', 'host': '2001:db8::25', 'port': 2525},
        {'domain': 'internal.example.net', 'exclude': True},
        {'host': 'email-smtp.eu-west-1.amazonaws.com', 'port': 587, 'username': 'AKIAEXAMPLE', 'password': SES_PW},
    ])])
    assert not play.failed, play.stdout + play.stderr
    assert play.result['changed'] is True
    assert play.result['created'] == ['@example.com', '@example.org', '@internal.example.net',
                                      '[email-smtp.eu-west-1.amazonaws.com]:587']
    relaymap, sasl = cfg / RELAYMAP, cfg / SASL
    assert postmap_query('@example.com', 'texthash:%s' % relaymap) == '[smtp.mailgun.org]:587'
    assert postmap_query('@EXAMPLE.com', 'texthash:%s' % relaymap) == '[smtp.mailgun.org]:587'
    assert postmap_query('@example.org', 'texthash:%s' % relaymap) == '[2001:db8::25]:2525'
    assert postmap_query('@example.com', 'texthash:%s' % sasl) == 'postmaster@mg.example.com:' + MAILGUN_PW
    assert postmap_query('[email-smtp.eu-west-1.amazonaws.com]:587', 'texthash:%s' % sasl) == \
        'AKIAEXAMPLE:' + SES_PW
    assert postmap_query('@example.org', 'texthash:%s' % sasl) is None

    # The opt-out, as DMS reads it: not copied into Postfix's relay map, recognised by _legacy_support,
    # and found again by the CLI's key lookup (so "setup relay add-domain" replaces it).
    assert read(relaymap).splitlines()[2] == '@internal.example.net '
    dms_map = tmp_path / 'relayhost_map'
    proc = subprocess.run(['grep', '-E', DMS_RELAY_LINE, str(relaymap)], capture_output=True, text=True, check=True)
    dms_map.write_text(proc.stdout)
    assert postmap_query('@internal.example.net', 'texthash:%s' % dms_map) is None
    assert postmap_query('@example.com', 'texthash:%s' % dms_map) == '[smtp.mailgun.org]:587'
    assert postmap_query('@example.org', 'texthash:%s' % dms_map) == '[2001:db8::25]:2525'
    assert grep(['-E', dms_optout_pattern('internal.example.net')], relaymap)
    assert not grep(['-E', dms_optout_pattern('example.com')], relaymap)
    assert grep(['--ignore-case', cli_key_lookup('internal.example.net')], relaymap)
    assert mode_of(sasl) == 0o600


def test_dms_rules_also_accept_a_handwritten_optout_and_the_module_keeps_it(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / RELAYMAP).write_text('# Opt-out of relaying:\n@domain3.com\n')
    before = snapshot(cfg)
    play = run_play(tmp_path, [relay(cfg, domain='domain3.com', exclude=True)])
    assert not play.failed, play.stdout + play.stderr
    assert play.result['changed'] is False
    assert snapshot(cfg) == before
    assert grep(['-E', dms_optout_pattern('domain3.com')], cfg / RELAYMAP)
    assert not grep(['-E', DMS_RELAY_LINE], cfg / RELAYMAP)


def test_cli_command_sequence_gives_the_files_the_cli_writes(tmp_path):
    """add-domain, add-auth, exclude-domain, add-domain again: DMS's byte formats, replaced, never duplicated."""
    cfg = tmp_path / 'config'

    def slurp(name):
        return {'name': 'slurp', 'ansible.builtin.slurp': {'src': str(cfg / name)}}

    tasks = [
        relay(cfg, domain='example.com', host='smtp.relay1.com'),                 # add-domain example.com smtp.relay1.com
        slurp(RELAYMAP),
        relay(cfg, domain='example.com', host='smtp.relay2.com', port=587),       # add-domain ... smtp.relay2.com 587
        slurp(RELAYMAP),
        relay(cfg, domain='example.com', username='user1', password=OTHER_PW),   # add-auth example.com user1 PW
        slurp(SASL),
        relay(cfg, domain='other.com', exclude=True),                            # exclude-domain other.com
        slurp(RELAYMAP),
        relay(cfg, domain='example.com', exclude=True),                          # exclude-domain example.com
        slurp(RELAYMAP),
        relay(cfg, domain='example.com', host='smtp.relay2.com', port=587),       # add-domain again
        slurp(RELAYMAP),
        relay(cfg, domain='example.com', username='user2', password=NEW_PW),     # add-auth again
        slurp(SASL),
    ]
    play = run_play(tmp_path, tasks)
    assert not play.failed, play.stdout + play.stderr
    contents = [base64.b64decode(t['content']).decode() for t in play.tasks[1::2]]
    assert contents == [
        '@example.com [smtp.relay1.com]:25\n',
        '@example.com [smtp.relay2.com]:587\n',
        '@example.com user1:%s\n' % OTHER_PW,
        '@example.com [smtp.relay2.com]:587\n@other.com \n',
        '@example.com \n@other.com \n',
        '@example.com [smtp.relay2.com]:587\n@other.com \n',
        '@example.com user2:%s\n' % NEW_PW,
    ]
    assert [t['changed'] for t in play.tasks[0::2]] == [True] * 7
    assert read(cfg / SASL) == '@example.com user2:%s\n' % NEW_PW  # exclude-domain left the credentials
    assert mode_of(cfg / SASL) == 0o600


EXISTING_RELAYMAP = (
    '# Relay hosts per sender domain\n'
    '@a.example [old.relay.example]:25\n'
    '\n'
    '   # an indented comment\n'
    'user@hand.example [x.example]:25\n'
    '@b.example \n'
)
EXISTING_SASL = '# credentials\n@a.example olduser:%s\n\n@keep.example k:%s\n' % (OTHER_PW, OTHER_PW)


def test_check_mode_predicts_the_real_run_and_a_second_run_changes_nothing(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / RELAYMAP).write_text(EXISTING_RELAYMAP)
    (cfg / SASL).write_text(EXISTING_SASL)
    os.chmod(cfg / SASL, 0o600)
    args = dict(relays=[
        {'domain': 'a.example', 'host': 'smtp.mailgun.org', 'port': 587, 'username': 'pm', 'password': MAILGUN_PW},
        {'domain': 'b.example', 'state': 'absent'},
        {'domain': 'c.example', 'exclude': True},
        {'host': 'email-smtp.us-west-2.amazonaws.com', 'port': 2587, 'username': 'aws-user', 'password': SES_PW},
    ])
    before = snapshot(cfg)
    check = run_play(tmp_path, [relay(cfg, **args)], check=True, diff=True)
    assert not check.failed, check.stdout + check.stderr
    assert snapshot(cfg) == before
    real = run_play(tmp_path, [relay(cfg, **args)], diff=True)
    assert not real.failed, real.stdout + real.stderr
    for key in ('changed', 'created', 'updated', 'removed', 'changed_files', 'diff'):
        assert check.result[key] == real.result[key], key
    assert real.result['created'] == ['@c.example', '[email-smtp.us-west-2.amazonaws.com]:2587']
    assert real.result['updated'] == ['@a.example']
    assert real.result['removed'] == ['@b.example']
    assert real.result['changed_files'] == [RELAYMAP, SASL]
    # Comments, blank lines, the unmanaged sender-address line and the order all kept.
    assert read(cfg / RELAYMAP) == (
        '# Relay hosts per sender domain\n'
        '@a.example [smtp.mailgun.org]:587\n'
        '\n'
        '   # an indented comment\n'
        'user@hand.example [x.example]:25\n'
        '@c.example \n')
    assert read(cfg / SASL) == ('# credentials\n@a.example pm:%s\n\n@keep.example k:%s\n'
                                '[email-smtp.us-west-2.amazonaws.com]:2587 aws-user:%s\n'
                                % (MAILGUN_PW, OTHER_PW, SES_PW))
    relaymap_diff = [d for d in real.result['diff'] if d['after_header'] == RELAYMAP][0]
    assert relaymap_diff['after'] == read(cfg / RELAYMAP)
    assert mode_of(cfg / SASL) == 0o600

    after = snapshot(cfg)
    again = run_play(tmp_path, [relay(cfg, **args)])
    assert again.result['changed'] is False
    assert again.result['changed_files'] == []
    assert again.result['created'] == again.result['updated'] == again.result['removed'] == []
    assert snapshot(cfg) == after
    check_again = run_play(tmp_path, [relay(cfg, **args)], check=True, diff=True)
    assert check_again.result['changed'] is False
    assert snapshot(cfg) == after


def test_no_password_in_output_or_log_at_vvvv_with_diff(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    existing = '@a.example pm:%s\n@c.example pm:%s\n' % (OTHER_PW, OTHER_PW)
    (cfg / SASL).write_text(existing)
    os.chmod(cfg / SASL, 0o644)
    log = tmp_path / 'ansible.log'
    tasks = [relay(cfg, relays=[
        {'domain': 'a.example', 'host': 'smtp.mailgun.org', 'port': 587, 'username': 'pm', 'password': MAILGUN_PW},
        {'domain': 'b.example', 'username': 'pm', 'password': MAILGUN_PW},
        {'host': 'email-smtp.eu-west-1.amazonaws.com', 'port': 587, 'username': 'AKIAEXAMPLE', 'password': SES_PW},
        {'domain': 'c.example', 'exclude': True},  # warns about c.example's credentials, naming no password
    ])]
    outputs = []
    for check in (True, False):
        play = run_play(tmp_path, tasks, check=check, diff=True, verbosity=4, json_output=False,
                        env={'ANSIBLE_LOG_PATH': str(log)})
        assert not play.failed, play.stdout + play.stderr
        outputs.append(play.stdout + play.stderr)
    # With the JSON callback too, where the diff is data (what AWX stores).
    (cfg / SASL).write_text(existing)
    as_json = run_play(tmp_path, tasks, diff=True, env={'ANSIBLE_LOG_PATH': str(log)})
    outputs.append(as_json.stdout + as_json.stderr)
    outputs.append(log.read_text())
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text
        # Masked by the module itself, not censored afterwards by Ansible's no_log filter ('********';
        # the banners' longer runs of '*' do not count).
        assert not re.search(r'(?<!\*)\*{8}(?!\*)', text)
    assert '@a.example pm:<password #1 masked>' in outputs[0]
    assert 'c.example opts out of relaying but postfix-sasl-password.cf still has credentials' in outputs[1]
    assert '+@a.example pm:<password #2 masked>' in outputs[1]
    assert '+@b.example pm:<password #2 masked>' in outputs[1]
    assert '+[email-smtp.eu-west-1.amazonaws.com]:587 AKIAEXAMPLE:<password #3 masked>' in outputs[1]
    assert 'mode 0644' in outputs[0] and 'mode 0600' in outputs[0]
    sasl_diff = [d for d in as_json.result['diff'] if d['after_header'] == SASL][0]
    assert sasl_diff['before'] == '@a.example pm:<password #1 masked>\n@c.example pm:<password #1 masked>\n'
    assert postmap_query('@b.example', 'texthash:%s' % (cfg / SASL)) == 'pm:' + MAILGUN_PW


def test_sasl_file_is_0600_after_every_write_and_a_wider_mode_is_fixed(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    content = '# relay credentials\n@a.example pm:%s\n' % MAILGUN_PW
    (cfg / SASL).write_text(content)
    os.chmod(cfg / SASL, 0o644)
    task = relay(cfg, domain='a.example', username='pm', password=MAILGUN_PW)

    check = run_play(tmp_path, [task], check=True, diff=True)
    assert check.result['changed'] is True
    assert check.result['changed_files'] == [SASL]
    assert check.result['diff'] == [{'before_header': SASL + ' (mode)', 'after_header': SASL + ' (mode)',
                                     'before': 'mode 0644\n', 'after': 'mode 0600\n'}]
    assert mode_of(cfg / SASL) == 0o644

    real = run_play(tmp_path, [task])
    assert real.result['changed'] is True
    assert real.result['changed_files'] == [SASL]
    assert real.result['updated'] == []
    assert mode_of(cfg / SASL) == 0o600
    assert read(cfg / SASL) == content

    assert run_play(tmp_path, [task]).result['changed'] is False

    # A content change to a group-readable file: written 0600 too.
    os.chmod(cfg / SASL, 0o640)
    rotated = run_play(tmp_path, [relay(cfg, domain='a.example', username='pm', password=NEW_PW)])
    assert rotated.result['updated'] == ['@a.example']
    assert mode_of(cfg / SASL) == 0o600
    # A run that only touches the relay map still narrows the SASL file.
    os.chmod(cfg / SASL, 0o666)
    relay_only = run_play(tmp_path, [relay(cfg, domain='a.example', host='smtp.mailgun.org', port=587)])
    assert relay_only.result['changed_files'] == [RELAYMAP, SASL]
    assert mode_of(cfg / SASL) == 0o600
    assert mode_of(cfg / RELAYMAP) == 0o644


BAD = [
    # (module args, text the message must contain)
    (dict(domain='exa mple.com', host='smtp.example.com'), "domain: 'exa mple.com' is not a valid domain name"),
    (dict(domain='example.com', host='smtp.example.com', port=0), 'port: 0 is not a valid port'),
    (dict(domain='example.com', host='smtp.example.com', port=70000), 'port: 70000 is not a valid port'),
    (dict(domain='example.com', host='smtp.example.com', port='abc'), "port: 'abc' is not a valid port"),
    (dict(domain='example.com', host='smtp relay.example.com'), "host: 'smtp relay.example.com' is not a valid"),
    (dict(domain='example.com', host='[smtp.example.com]'), 'host: \'[smtp.example.com]\' must be given without'),
    (dict(domain='example.com', host='smtp.example.com:587'), 'give the port in the port option'),
    (dict(domain='example.com', password=MAILGUN_PW), 'password: needs username'),
    (dict(domain='example.com', username='pm'), 'username: needs password'),
    (dict(domain='example.com', username='pm:x', password=MAILGUN_PW), "username: 'pm:x' contains \":\""),
    (dict(domain='example.com', username='pm', password=MAILGUN_PW + '\n'), 'password: contains a line break'),
    (dict(domain='example.com', username='pm', password=MAILGUN_PW + '\x01'), 'password: contains a control'),
    (dict(domain='example.com', host='smtp.example.com', exclude=True), 'exclude: contradicts host'),
    (dict(domain='example.com', exclude=True, username='pm', password=MAILGUN_PW), 'username: contradicts exclude'),
    (dict(host='smtp.example.com', port=587), 'username: is required for an item without domain'),
    (dict(domain='example.com', host='smtp.example.com', state='absent'), 'host: has no meaning with state=absent'),
    (dict(relays=[{'domain': 'a.example', 'host': 'smtp.example.com'},
                  {'domain': 'b.example', 'host': 'smtp.example.com', 'username': 'pm', 'password': MAILGUN_PW},
                  {'domain': 'c.example', 'host': 'smtp.example.com', 'port': 70000}]),
     'relays[2].port: 70000 is not a valid port'),
    (dict(relays=[{'domain': 'a.example', 'host': 'smtp.example.com'}, {'domain': 'A.example', 'exclude': True}]),
     'relays[1].domain: @a.example is listed twice (also at relays[0].domain)'),
    (dict(domain='example.com', exclusive=True), 'exclusive: needs the relays list'),
    (dict(domain='example.com', relays=[]), 'mutually exclusive'),
]


def test_malformed_inputs_fail_cleanly_and_change_no_file(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / RELAYMAP).write_text(EXISTING_RELAYMAP)
    (cfg / SASL).write_text(EXISTING_SASL)
    os.chmod(cfg / SASL, 0o644)  # even the mode fix must wait for valid input
    before, before_modes = snapshot(cfg), modes(cfg)
    tasks = []
    for index, (args, dummy) in enumerate(BAD):
        task = relay(cfg, name='bad %d' % index, **args)
        task['ignore_errors'] = True
        tasks.append(task)
    play = run_play(tmp_path, tasks)
    assert len(play.tasks) == len(BAD) >= 10
    for (args, expected), result in zip(BAD, play.tasks):
        assert result.get('failed') is True, (args, result)
        assert expected in result['msg'], (expected, result['msg'])
    for secret in SECRETS:
        assert secret not in play.stdout + play.stderr
    assert snapshot(cfg) == before
    assert modes(cfg) == before_modes


def test_exclusive_absent_and_backup(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / RELAYMAP).write_text(EXISTING_RELAYMAP)
    (cfg / SASL).write_text(EXISTING_SASL)
    os.chmod(cfg / SASL, 0o600)
    play = run_play(tmp_path, [relay(cfg, exclusive=True, backup=True, relays=[
        {'domain': 'a.example', 'host': 'old.relay.example'},
        {'domain': 'd.example', 'host': 'smtp.sendgrid.net', 'port': 2525, 'username': 'apikey',
         'password': SES_PW},
    ])])
    assert not play.failed, play.stdout + play.stderr
    result = play.result
    assert result['removed'] == ['user@hand.example', '@b.example', '@keep.example']
    assert result['created'] == ['@d.example']
    assert read(cfg / RELAYMAP) == ('# Relay hosts per sender domain\n@a.example [old.relay.example]:25\n\n'
                                    '   # an indented comment\n@d.example [smtp.sendgrid.net]:2525\n')
    # a.example names no credentials: its line stays; keep.example is not listed: removed.
    assert read(cfg / SASL) == '# credentials\n@a.example olduser:%s\n\n@d.example apikey:%s\n' % (OTHER_PW, SES_PW)
    assert len(result['backup_files']) == 2
    backups = sorted(read(path) for path in result['backup_files'])
    assert backups == sorted([EXISTING_RELAYMAP, EXISTING_SASL])
    assert mode_of(cfg / SASL) == 0o600

    gone = run_play(tmp_path, [relay(cfg, domain='d.example', state='absent')])
    assert gone.result['removed'] == ['@d.example']
    assert postmap_query('@d.example', 'texthash:%s' % (cfg / RELAYMAP)) is None
    assert postmap_query('@d.example', 'texthash:%s' % (cfg / SASL)) is None
    assert run_play(tmp_path, [relay(cfg, domain='d.example', state='absent')]).result['changed'] is False


def test_check_mode_on_a_missing_config_dir_creates_nothing(tmp_path):
    cfg = tmp_path / 'not-yet'
    play = run_play(tmp_path, [relay(cfg, domain='example.com', host='smtp.example.com', username='u',
                                     password=MAILGUN_PW)], check=True)
    assert not play.failed, play.stdout + play.stderr
    assert play.result['changed'] is True
    assert play.result['changed_files'] == [RELAYMAP, SASL]
    assert not cfg.exists()


def test_module_defaults_through_the_action_group(tmp_path):
    cfg = tmp_path / 'config'
    play = run_play(tmp_path, [{'dms.mailserver.dms_relay': {'domain': 'example.com', 'exclude': True}}],
                    module_defaults={'group/dms.mailserver.dms': {'config_dir': str(cfg)}})
    assert not play.failed, play.stdout + play.stderr
    assert re.fullmatch(r'@example\.com \n', read(cfg / RELAYMAP))
