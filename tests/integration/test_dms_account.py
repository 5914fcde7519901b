# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_account end to end: real ansible-playbook runs, checked with Debian's doveadm."""
from __future__ import annotations

import concurrent.futures
import os
import re
import stat

import pytest

from dmstest import doveadm_hash, doveadm_verify, run_play, snapshot

PASSWORDS = {'alice@example.com': 'Alice-pw-1!', 'bob@example.com': "b0b's p@ss|word",
             'carol@example.org': 'carol with spaces'}


def group_defaults(cfg):
    return {'group/dms.mailserver.dms': {'config_dir': str(cfg)}}


def account_task(**args):
    return {'name': 'accounts', 'dms.mailserver.dms_account': args}


def accounts_in(cfg):
    lines = (cfg / 'postfix-accounts.cf').read_text().splitlines()
    return dict(line.split('|', 1) for line in lines if line and not line.startswith('#'))


def test_hashes_of_all_schemes_verify_with_doveadm(tmp_path):
    cfg = tmp_path / 'cfg'
    schemes = dict(zip(PASSWORDS, ['SHA512-CRYPT', 'BLF-CRYPT', 'ARGON2ID']))
    items = [{'address': a, 'password': p, 'scheme': schemes[a]} for a, p in PASSWORDS.items()]
    res = run_play(tmp_path, [account_task(accounts=items)], module_defaults=group_defaults(cfg))
    assert res.rc == 0, res.stdout
    assert sorted(res.result['created']) == sorted(PASSWORDS)
    stored = accounts_in(cfg)
    for address, password in PASSWORDS.items():
        assert stored[address].startswith('{%s}' % schemes[address])
        assert doveadm_verify(stored[address], password), address
        assert not doveadm_verify(stored[address], password + 'x'), address


def test_second_run_changes_nothing(tmp_path):
    cfg = tmp_path / 'cfg'
    task = account_task(accounts=[{'address': a, 'password': p, 'quota': '1G', 'restrict': ['receive']}
                                  for a, p in PASSWORDS.items()])
    first = run_play(tmp_path, [task], module_defaults=group_defaults(cfg))
    assert first.rc == 0 and first.result['changed']
    before = snapshot(cfg)
    second = run_play(tmp_path, [task], module_defaults=group_defaults(cfg))
    assert second.rc == 0
    assert second.result['changed'] is False
    assert second.result['created'] == second.result['updated'] == second.result['removed'] == []
    assert snapshot(cfg) == before


def test_hashes_written_by_doveadm_are_kept(tmp_path):
    """A file made by DMS's `setup email add` (doveadm pw -s SHA512-CRYPT) is not rewritten."""
    cfg = tmp_path / 'cfg'
    cfg.mkdir()
    text = '# made by setup email add\n' + ''.join(
        '%s|%s\n' % (a, doveadm_hash(p)) for a, p in PASSWORDS.items())
    (cfg / 'postfix-accounts.cf').write_text(text)
    before = snapshot(cfg)
    res = run_play(tmp_path, [account_task(accounts=[{'address': a, 'password': p} for a, p in PASSWORDS.items()],
                                           update_password='always')],
                   module_defaults=group_defaults(cfg))
    assert res.rc == 0 and res.result['changed'] is False
    assert snapshot(cfg) == before
    # ...but a changed password is noticed and re-hashed.
    res = run_play(tmp_path, [account_task(address='bob@example.com', password='new one')],
                   module_defaults=group_defaults(cfg))
    assert res.result['updated'] == ['bob@example.com']
    assert doveadm_verify(accounts_in(cfg)['bob@example.com'], 'new one')


def _seed(tmp_path, cfg):
    items = [{'address': a, 'password': p} for a, p in PASSWORDS.items()]
    assert run_play(tmp_path, [account_task(accounts=items)], module_defaults=group_defaults(cfg)).rc == 0


def test_check_mode_predicts_exactly_and_writes_nothing(tmp_path):
    cfg = tmp_path / 'cfg'
    _seed(tmp_path, cfg)
    (cfg / 'postfix-virtual.cf').write_text('team@example.com alice@example.com,carol@example.org\n')
    before = snapshot(cfg)
    task = account_task(accounts=[
        {'address': 'alice@example.com', 'password': PASSWORDS['alice@example.com'], 'quota': '5G'},
        {'address': 'bob@example.com', 'password': 'changed password'},
        {'address': 'dave@example.net', 'password': 'Dave-Pw-1234'},
    ], exclusive=True)
    check = run_play(tmp_path, [task], check=True, diff=True, module_defaults=group_defaults(cfg))
    assert check.rc == 0 and check.result['changed']
    assert snapshot(cfg) == before
    real = run_play(tmp_path, [task], diff=True, module_defaults=group_defaults(cfg))
    assert real.rc == 0
    for key in ('created', 'updated', 'removed', 'changed_files', 'restart_required'):
        assert check.result[key] == real.result[key], key
    assert real.result['created'] == ['dave@example.net']
    assert real.result['updated'] == ['alice@example.com', 'bob@example.com']
    assert real.result['removed'] == ['carol@example.org']
    assert real.result['changed_files'] == ['dovecot-quotas.cf', 'postfix-accounts.cf', 'postfix-virtual.cf']
    assert (cfg / 'postfix-virtual.cf').read_text() == 'team@example.com alice@example.com\n'
    # the diff shows added, removed and changed accounts, with every hash masked
    diffs = {d['after_header']: d for d in check.result['diff']}
    acc = diffs['postfix-accounts.cf']
    text = acc['before'] + acc['after']
    assert '$6$' not in text and 'SHA512-CRYPT}<hash #' in text
    before_lines, after_lines = acc['before'].splitlines(), acc['after'].splitlines()
    assert any(line.startswith('carol@example.org|') for line in before_lines)
    assert not any(line.startswith('carol@example.org|') for line in after_lines)
    assert any(line.startswith('dave@example.net|') for line in after_lines)
    alice = [line for line in before_lines + after_lines if line.startswith('alice@')]
    bob = [line for line in before_lines + after_lines if line.startswith('bob@')]
    assert alice[0] == alice[1]          # same password: same placeholder
    assert bob[0] != bob[1]              # changed password: another placeholder


def test_comments_unknown_lines_and_crlf_survive(tmp_path):
    cfg = tmp_path / 'cfg'
    cfg.mkdir()
    alice = doveadm_hash('pw-a')
    original = ('# Accounts of example.com\r\n\r\n'
                'alice@example.com|%s|userdb_mail=maildir:~/Maildir\r\n'
                '   # indented comment\r\n'
                'this line is not an account\r\n' % alice)
    (cfg / 'postfix-accounts.cf').write_bytes(original.encode())
    (cfg / 'dovecot-quotas.cf').write_text('# quotas\n\nalice@example.com:1G\n')
    res = run_play(tmp_path, [account_task(address='alice@example.com', password='pw-a')],
                   module_defaults=group_defaults(cfg))
    assert res.rc == 0 and res.result['changed'] is False
    assert (cfg / 'postfix-accounts.cf').read_bytes() == original.encode()  # CRLF read; nothing to write
    res = run_play(tmp_path, [account_task(address='bob@example.com', password='pw-b', quota='2G')],
                   module_defaults=group_defaults(cfg))
    assert res.rc == 0 and res.result['created'] == ['bob@example.com']
    lines = (cfg / 'postfix-accounts.cf').read_text().split('\n')
    assert lines[:5] == ['# Accounts of example.com', '',
                         'alice@example.com|%s|userdb_mail=maildir:~/Maildir' % alice,
                         '   # indented comment', 'this line is not an account']
    assert lines[5].startswith('bob@example.com|{SHA512-CRYPT}$6$') and lines[6:] == ['']
    assert (cfg / 'dovecot-quotas.cf').read_text() == '# quotas\n\nalice@example.com:1G\nbob@example.com:2G\n'


BAD_INPUTS = [
    (dict(address='not-an-address', password='Pw-Not-Short-1'), 'address'),
    (dict(address='a@b@example.com', password='Pw-Not-Short-1'), 'address'),
    (dict(address='a b@example.com', password='Pw-Not-Short-1'), 'white space'),
    (dict(address='a|x@example.com', password='Pw-Not-Short-1'), "'|'"),
    (dict(address='a:x@example.com', password='Pw-Not-Short-1'), "':'"),
    (dict(address='a@example.com\nb@example.com|{PLAIN}x', password='Pw-Not-Short-1'), 'line break'),
    (dict(address='a@exa_mple.com', password='Pw-Not-Short-1'), 'label'),
    (dict(address='a@example.com', password='x\ny'), 'password'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', quota='10'), 'quota'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', quota='10MB'), 'quota'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', quota='1.5G'), 'quota'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', password_hash='{SHA512-CRYPT}$6$x$y'), 'mutually exclusive'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', scheme='MD5'), 'scheme'),
    (dict(address='a@example.com', password_hash='$6$abc$def'), 'password_hash'),
    (dict(address='a@example.com', password_hash='{SHA512-CRYPT}$6$abc$def'), 'password_hash'),
    (dict(address='a@example.com', password_hash='{BLF-CRYPT}$2y$10$short|x'), 'password_hash'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', restrict=['sending']), 'restrict'),
    (dict(accounts=[{'address': 'ok@example.com', 'password': 'Pw-Not-Short-1'},
                    {'address': 'bad@@example.com', 'password': 'Pw-Not-Short-1'}]), 'accounts[1].address'),
    (dict(accounts=[{'address': 'ok@example.com', 'password': 'Pw-Not-Short-1'},
                    {'address': 'OK@example.com', 'password': 'Pw-Not-Short-1'}]), 'listed twice'),
    (dict(accounts=[], exclusive=True), 'every account'),
    (dict(address='existing-alias@example.com', password='Pw-Not-Short-1'), 'allow_alias_overlap'),
    (dict(address='new@example.com', quota='1G'), 'does not exist yet'),
    (dict(address='a@example.com', password='Pw-Not-Short-1', lock_timeout=-1), 'lock_timeout'),
]


def test_malformed_inputs_fail_cleanly(tmp_path):
    cfg = tmp_path / 'cfg'
    cfg.mkdir()
    (cfg / 'postfix-accounts.cf').write_text('# keep\nold@example.com|%s\n' % doveadm_hash('old'))
    (cfg / 'postfix-virtual.cf').write_text('existing-alias@example.com old@example.com\n')
    before = snapshot(cfg)
    tasks = [dict(account_task(**args), ignore_errors=True) for args, dummy in BAD_INPUTS]
    res = run_play(tmp_path, tasks, module_defaults=group_defaults(cfg))
    assert len(res.tasks) == len(BAD_INPUTS) >= 15
    for (args, needle), result in zip(BAD_INPUTS, res.tasks):
        assert result.get('failed'), (args, result)
        assert needle in result['msg'], (needle, result['msg'])
        assert 'x\ny' not in result['msg']
    assert snapshot(cfg) == before


def _add_one(tmp_path, cfg, i):
    return run_play(tmp_path, [account_task(address='user%d@example.com' % i, password='pw%d' % i,
                                            quota='%dM' % (i + 1), lock_timeout=120)],
                    module_defaults=group_defaults(cfg), name='play%d' % i)


def test_eight_concurrent_playbooks_lose_no_account(tmp_path):
    cfg = tmp_path / 'cfg'
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _add_one(tmp_path, cfg, i), range(8)))
    assert all(r.rc == 0 for r in results), [r.stdout for r in results if r.rc]
    stored = accounts_in(cfg)
    assert sorted(stored) == sorted('user%d@example.com' % i for i in range(8))
    for i in range(8):
        assert doveadm_verify(stored['user%d@example.com' % i], 'pw%d' % i)
    quotas = (cfg / 'dovecot-quotas.cf').read_text().splitlines()
    assert sorted(quotas) == sorted('user%d@example.com:%dM' % (i, i + 1) for i in range(8))
    assert not [n for n in os.listdir(cfg) if n.endswith('.dms-tmp')]


def test_no_secret_in_output_at_vvvv_with_diff(tmp_path):
    cfg = tmp_path / 'cfg'
    cfg.mkdir()
    old_hash = doveadm_hash('Old-Secret-Pw-42')
    (cfg / 'postfix-accounts.cf').write_text('alice@example.com|%s\n' % old_hash)
    secret = 'Sup3r-Secret-Pw-77'
    tasks = [account_task(accounts=[{'address': 'alice@example.com', 'password': secret},
                                    {'address': 'bob@example.com', 'password': secret + 'b', 'scheme': 'BLF-CRYPT'}])]
    for check in (True, False):
        res = run_play(tmp_path, tasks, check=check, diff=True, verbosity=4, json_output=False,
                       module_defaults=group_defaults(cfg))
        out = res.stdout + res.stderr
        assert res.rc == 0, out
        assert 'changed: [localhost]' in out
        assert secret not in out
        hashes = list(accounts_in(cfg).values()) + [old_hash]
        for stored in hashes:
            assert stored.split('}', 1)[1] not in out
        assert not re.search(r'\$(6|2y|argon2id)\$', out)
        assert '<hash #' in out   # the diff was shown, masked


def test_bulk_thousand_accounts_then_exclusive_half(tmp_path):
    cfg = tmp_path / 'cfg'
    n = 1000
    items = [{'address': 'u%04d@bulk.example' % i, 'password': 'pw-%d' % i, 'quota': '100M',
              'restrict': ['send'] if i % 2 else []} for i in range(n)]
    first = run_play(tmp_path, [account_task(accounts=items)], module_defaults=group_defaults(cfg))
    assert first.rc == 0 and len(first.result['created']) == n
    aliases = ''.join('list%d@bulk.example u%04d@bulk.example,u%04d@bulk.example\n' % (i, i, i + 500)
                      for i in range(0, 500, 50))
    (cfg / 'postfix-virtual.cf').write_text(aliases)
    before = snapshot(cfg)
    again = run_play(tmp_path, [account_task(accounts=items)], module_defaults=group_defaults(cfg))
    assert again.rc == 0 and again.result['changed'] is False
    assert snapshot(cfg) == before
    keep = items[:n // 2]
    excl = run_play(tmp_path, [account_task(accounts=keep, exclusive=True)], module_defaults=group_defaults(cfg))
    assert excl.rc == 0
    assert sorted(excl.result['removed']) == sorted(i['address'] for i in items[n // 2:])
    assert sorted(accounts_in(cfg)) == sorted(i['address'] for i in keep)
    quota_keys = [line.split(':')[0] for line in (cfg / 'dovecot-quotas.cf').read_text().splitlines()]
    assert sorted(quota_keys) == sorted(i['address'] for i in keep)
    send = [line.split()[0] for line in (cfg / 'postfix-send-access.cf').read_text().splitlines()]
    assert sorted(send) == sorted(i['address'] for i in keep if i['restrict'])
    assert (cfg / 'postfix-virtual.cf').read_text() == ''.join(
        'list%d@bulk.example u%04d@bulk.example\n' % (i, i) for i in range(0, 500, 50))


def test_backup_keeps_previous_file(tmp_path):
    cfg = tmp_path / 'cfg'
    _seed(tmp_path, cfg)
    previous = (cfg / 'postfix-accounts.cf').read_bytes()
    res = run_play(tmp_path, [account_task(address='new@example.com', password='Pw-Not-Short-1', backup=True)],
                   module_defaults=group_defaults(cfg))
    assert res.rc == 0
    [backup] = res.result['backup_files']
    with open(backup, 'rb') as handle:
        assert handle.read() == previous
    assert stat.S_IMODE(os.stat(cfg / 'postfix-accounts.cf').st_mode) == 0o600


@pytest.mark.parametrize('update_password,expect_change', [('always', True), ('on_create', False)])
def test_update_password_modes(tmp_path, update_password, expect_change):
    cfg = tmp_path / 'cfg'
    _seed(tmp_path, cfg)
    res = run_play(tmp_path, [account_task(address='alice@example.com', password='another',
                                           update_password=update_password)], module_defaults=group_defaults(cfg))
    assert res.rc == 0 and res.result['changed'] is expect_change
    assert doveadm_verify(accounts_in(cfg)['alice@example.com'], 'another') is expect_change
