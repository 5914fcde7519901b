# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets: every module, at -vvvv with --diff, with and without ANSIBLE_DEBUG=1, while another thread reads every
process's command line (and the environment of ansible and python processes): no plaintext password, no hash, no
DKIM private key material and no relay password shows up in stdout, stderr, the ANSIBLE_LOG_PATH log or any
command line -- on success, in check mode, and in the error messages of rejected input.

The one exception is ansible-core's, not the collection's: with ANSIBLE_DEBUG=1 ansible-core prints each module's
arguments, no_log values included (its documentation of ANSIBLE_DEBUG warns about it).  So in that run, what a
task passed as an argument (a password, a password_hash) may appear in those echo lines and nowhere else; what the
modules produce or read on the managed host (hashes, keys, stored relay passwords) appears nowhere at all.
See docs/reliability.md."""
from __future__ import annotations

import base64
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from dmstest import doveadm_hash, run_play
from reltest import ProcSampler, note, task, write_files

from ansible_collections.dms.mailserver.plugins.module_utils._dkim import generate_key, load_private_key, pem_pkcs8


BULK = 80


def _token(label):
    return '%s-%s' % (label, secrets.token_urlsafe(18))


def _key_material(text):
    """Pieces of a private key file that must never be shown: 32-character chunks of its base64 body.

    Any shown run of 63 or more characters of the body contains one whole chunk, however it was wrapped.
    """
    body = ''.join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith('-----'))
    assert len(body) >= 64
    raw = base64.b64decode(body)
    pieces = [body[i:i + 32] for i in range(0, len(body) - 31, 32)]
    # The raw key bytes in hex, as a debug print might show them.
    pieces += [raw.hex()[i:i + 32] for i in range(0, len(raw.hex()) - 31, 32)]
    return pieces


def _hash_pieces(stored):
    """A stored {SCHEME}hash, its body, and the hash part after its last '$' (what a partial print would show)."""
    body = stored.split('}', 1)[1]
    return [stored, body, body.rsplit('$', 1)[1]]


# ansible-core's own debug echo of a module's arguments: with ANSIBLE_DEBUG=1 it prints them, no_log values
# included (its documentation of DEFAULT_DEBUG says so).  Only these lines may show what a task passed as an
# argument, and only in the ANSIBLE_DEBUG run; nothing the collection produces or reads may appear even there.
_CORE_ARGS_ECHO = re.compile(r'^.*done with _execute_module \(dms\.mailserver\.dms_[a-z_]+, \{.*$', re.M)


def _scenario(cfg):
    """Tasks of all six modules, and the secrets they are given or find on disk.

    The tasks take their secrets from variables (a vars file passed with ``-e @file``), as playbooks do with
    Ansible Vault: ansible-core 2.19 shows the playbook lines around a failed task, so a literal written into
    the task would be shown by ansible-core itself (docs/reliability.md).
    """
    arg = dict((name, _token(name)) for name in ('new', 'changed', 'blf', 'argon', 'relay', 'relay_host', 'check',
                                                 'given', 'badnl', 'badspace', 'badctl', 'badhash', 'both',
                                                 'cfg_main', 'cfg_override', 'cfg_amavis', 'cfg_bad', 'info',
                                                 'info_relay', 'info_bad',
                                                 'master', 'master_changed', 'master_check', 'master_given',
                                                 'master_badhash', 'fetch', 'fetch_getmail', 'fetch_bad',
                                                 'info_master', 'info_fetch'))
    old_account_pw, old_relay_pw, old_master_pw = _token('old'), _token('oldrelay'), _token('oldmaster')
    old_fetch_pw, old_getmail_pw = _token('oldfetch'), _token('oldgetmail')
    given_hash = doveadm_hash(arg['given'])
    old_hash = doveadm_hash(old_account_pw)
    old_master_hash = doveadm_hash(old_master_pw)
    given_master_hash = doveadm_hash(arg['master_given'], 'BLF-CRYPT')
    old_key = pem_pkcs8(generate_key('rsa', 1024))
    write_files(cfg, {
        'postfix-accounts.cf': 'changed@example.com|%s\n' % old_hash,
        'postfix-sasl-password.cf': '@example.com relayuser:%s\n' % old_relay_pw,
        'dovecot-masters.cf': 'changedmaster|%s\nremovedmaster|%s\n' % (old_master_hash, old_master_hash),
        'opendkim/keys/old.example.org/mail.private': old_key,
        'fetchmail.cf': "poll 'old.example.net' proto pop3 user 'old' pass '%s' is 'changed@example.com' here\n"
                        % old_fetch_pw,
        'getmail/old.cf': '[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = oldg.example.net\nusername = oldg\n'
                          'password = %s\n' % old_getmail_pw,
    })
    # A bulk call: with 64 or more no_log values the module prunes the set ansible-core masks (see _common.py).
    bulk = [_token('bulk') for dummy in range(BULK)]
    variables = dict(('s_%s' % name, value) for name, value in arg.items())
    variables['s_bulk'] = [{'address': 'bulk%d@example.com' % i, 'password': pw} for i, pw in enumerate(bulk)]
    variables.update(s_given_hash=given_hash, s_given_master_hash=given_master_hash,
                     s_master_badhash='{BLF-CRYPT}$2y$' + arg['master_badhash'], s_badnl=arg['badnl'] + '\nsecond line',
                     s_badspace=arg['badspace'] + ' ', s_badctl=arg['badctl'] + '\x07',
                     s_badhash='{SHA512-CRYPT}$6$' + arg['badhash'], s_badcfg=arg['cfg_bad'] + '\nx = y',
                     s_fetch_bad=arg['fetch_bad'] + "'\npoll evil.example")

    def var(name):
        return '{{ s_%s }}' % name
    c = str(cfg)
    tasks = [
        task('dms_account', 'accounts', config_dir=c, accounts=[
            {'address': 'new@example.com', 'password': var('new'), 'quota': '1G'},
            {'address': 'changed@example.com', 'password': var('changed')},
            {'address': 'blf@example.com', 'password': var('blf'), 'scheme': 'BLF-CRYPT'},
            {'address': 'argon@example.com', 'password': var('argon'), 'scheme': 'ARGON2ID'},
            {'address': 'given@example.com', 'password_hash': var('given_hash')},
        ]),
        task('dms_account', 'bulk accounts', config_dir=c, accounts='{{ s_bulk }}'),
        task('dms_account', 'accounts again (verified, kept)', config_dir=c, accounts=[
            {'address': 'new@example.com', 'password': var('new')},
            {'address': 'changed@example.com', 'password': var('changed')},
        ]),
        dict(task('dms_account', 'account in check mode', config_dir=c, address='check@example.com',
                  password=var('check')), check_mode=True),
        # dms_sieve rewrites a comment of postfix-accounts.cf (the file of the hashes) and shows it in its diff.
        task('dms_sieve', 'a user script (rewrites the accounts file)', config_dir=c, address='changed@example.com',
             vacation={'subject': 'Away', 'body': 'Back soon.'}),
        task('dms_alias', 'a catch-all (reads the accounts file)', config_dir=c, alias='@example.com',
             recipients=['new@example.com']),
        task('dms_relay', 'relays', config_dir=c, relays=[
            {'domain': 'example.com', 'host': 'smtp.example.net', 'port': 587, 'username': 'relayuser',
             'password': var('relay')},
            {'host': 'smtp.example.org', 'port': 465, 'username': 'hostuser', 'password': var('relay_host')},
        ]),
        task('dms_dkim', 'opendkim keys, one rotated', config_dir=c, domains=['old.example.org', 'example.com'],
             regenerate='always', key_size=1024),
        task('dms_dkim', 'rspamd ed25519 key', config_dir=c, domain='example.net', backend='rspamd',
             key_type='ed25519'),
        task('dms_dovecot_master', 'masters', config_dir=c, exclusive=True, masters=[
            {'name': 'admin', 'password': var('master')},
            {'name': 'changedmaster', 'password': var('master_changed')},
            {'name': 'givenmaster', 'password_hash': var('given_master_hash')},
        ]),
        task('dms_dovecot_master', 'master again (verified, kept)', config_dir=c, name='admin',
             password=var('master')),
        dict(task('dms_dovecot_master', 'master in check mode', config_dir=c, name='checkmaster',
                  password=var('master_check')), check_mode=True),
        task('dms_config', 'a secret-named Postfix setting', config_dir=c, file='postfix-main.cf',
             settings={'smtp_sasl_password': var('cfg_main'), 'smtputf8_enable': False}),
        task('dms_config', 'an Rspamd override with a password', config_dir=c,
             file='rspamd/override.d/worker-controller.inc', mode='0600',
             content='password = "%s";\n' % var('cfg_override')),
        task('dms_config', 'amavis.cf with no_log_content', config_dir=c, file='amavis.cf', no_log_content=True,
             content='$sql_password = "%s";\n1;\n' % var('cfg_amavis')),
        # dms_info reads everything written above (hashes, relay passwords, keys) and compares passwords.
        task('dms_info', 'everything, compared with passwords checked', config_dir=c, verify_passwords=True,
             compare_to={'accounts': [{'address': 'new@example.com', 'password': var('new')},
                                      {'address': 'changed@example.com', 'password': var('info')}],
                         'relays': [{'domain': 'example.com', 'host': 'smtp.example.net', 'port': 587,
                                     'username': 'relayuser', 'password': var('info_relay')}]}),
        # Remote mailboxes: two new ones, and two whose passwords the module reads on disk and keeps.
        task('dms_fetchmail', 'remote mailboxes', config_dir=c, fetches=[
            {'server': 'pop.example.net', 'protocol': 'pop3', 'username': 'f1', 'password': var('fetch'),
             'target': 'new@example.com'},
            {'server': 'imap.example.net', 'username': 'g1', 'password': var('fetch_getmail'), 'fetcher': 'getmail',
             'target': 'new@example.com'},
            {'server': 'old.example.net', 'protocol': 'imap', 'username': 'old', 'target': 'changed@example.com'},
            {'server': 'oldg.example.net', 'username': 'oldg', 'target': 'changed@example.com'},
        ]),
        # dms_info reads the master hashes and the fetch passwords written above, and compares given ones.
        task('dms_info', 'masters and remote mailboxes, compared with passwords checked', config_dir=c,
             verify_passwords=True, gather=['masters', 'sieve', 'fetches'],
             compare_to={'masters': [{'name': 'admin', 'password': var('info_master')}],
                         'fetches': [{'server': 'pop.example.net', 'protocol': 'pop3', 'username': 'f1',
                                      'password': var('info_fetch'), 'target': 'new@example.com'}]}),
    ]
    rejected = [
        task('dms_account', 'password with a line break', config_dir=c, address='x@example.com',
             password=var('badnl')),
        task('dms_relay', 'relay password with a trailing space', config_dir=c, domain='example.org',
             host='smtp.example.net', username='u', password=var('badspace')),
        task('dms_relay', 'relay password with a control character', config_dir=c, domain='example.org',
             host='smtp.example.net', username='u', password=var('badctl')),
        task('dms_account', 'malformed hash', config_dir=c, address='x@example.com', password_hash=var('badhash')),
        task('dms_account', 'password and hash', config_dir=c, address='x@example.com', password=var('both'),
             password_hash=var('given_hash')),
        task('dms_dovecot_master', 'master password with a line break', config_dir=c, name='x',
             password=var('badnl')),
        task('dms_dovecot_master', 'malformed master hash', config_dir=c, name='x',
             password_hash=var('master_badhash')),
        task('dms_dovecot_master', 'master named like an account', config_dir=c, name='new@example.com',
             password=var('master')),
        task('dms_config', 'a secret-named setting with a line break', config_dir=c, file='postfix-main.cf',
             settings={'smtp_sasl_password': var('badcfg')}),
        task('dms_info', 'compare_to with a malformed address next to a password', config_dir=c,
             compare_to={'accounts': [{'address': 'not-an-address', 'password': var('info_bad')}]}),
        task('dms_fetchmail', 'remote password with a quote and a line break', config_dir=c,
             server='pop.example.org', username='u', password=var('fetch_bad'), target='new@example.com'),
    ]
    tasks += [dict(item, ignore_errors=True) for item in rejected]
    return {'tasks': tasks, 'rejected': len(rejected), 'vars': variables,
            'args': list(arg.values()) + bulk + _hash_pieces(given_hash) + _hash_pieces(given_master_hash),
            'disk': [old_account_pw, old_relay_pw, old_master_pw, old_fetch_pw, old_getmail_pw]
            + _hash_pieces(old_hash) + _hash_pieces(old_master_hash), 'old_key': old_key}


def _produced(cfg, scenario):
    """Secrets the modules made or read on the managed host: hashes, DKIM private keys (chunks)."""
    accounts = dict(line.split('|')[:2] for line in (cfg / 'postfix-accounts.cf').read_text().splitlines()
                    if '|' in line)
    assert len(accounts) == 5 + BULK
    masters = dict(line.split('|', 1) for line in (cfg / 'dovecot-masters.cf').read_text().splitlines() if '|' in line)
    assert sorted(masters) == ['admin', 'changedmaster', 'givenmaster'], masters
    needles = list(scenario['disk'])
    for stored in list(accounts.values()) + list(masters.values()):
        if stored not in scenario['args']:  # the password_hash a task gave is an argument, not a product
            needles += _hash_pieces(stored)
    keys = [scenario['old_key']] + [p.read_text() for p in sorted(cfg.glob('opendkim/keys/*/*.private'))] + \
        [p.read_text() for p in sorted(cfg.glob('rspamd/dkim/*.private.txt'))]
    assert len(keys) == 4 and scenario['old_key'] not in keys[1:], 'the old key was not rotated'
    # Pieces of the public keys are published (records, .txt files) and may be shown: only private pieces count.
    public = ''.join(load_private_key(text, 'key').p for text in keys)
    pieces = [piece for text in keys for piece in _ed25519_or_pem(text) if piece not in public]
    return needles, pieces


def _run(tmp_path, name, debug, cfg, scenario):
    log = tmp_path / ('%s.log' % name)
    # Its own remote_tmp: the sampler tells this test's module processes from other runs' by their path.
    env = {'ANSIBLE_LOG_PATH': str(log), 'ANSIBLE_REMOTE_TMP': str(tmp_path / 'remote-tmp')}
    if debug:
        env['ANSIBLE_DEBUG'] = '1'
    secrets_file = tmp_path / ('%s-secrets.yml' % name)
    secrets_file.write_text(yaml.safe_dump(scenario['vars']))
    play = run_play(tmp_path, scenario['tasks'], diff=True, verbosity=4, json_output=False, env=env, name=name,
                    extra_args=['-e', '@%s' % secrets_file])
    out = play.stdout + play.stderr
    assert play.rc == 0, out[-5000:]
    assert out.count('...ignoring') == scenario['rejected'], 'not every bad input was rejected'
    assert '<hash #' in out and '<password #' in out and 'private key (not shown)' in out, \
        'the diffs were not shown (masked) at all'
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in out, 'the -vvvv invocation arguments were not shown'
    return cfg, scenario, play, log.read_text(errors='replace')


def _check(haystacks, needles, pieces):
    for where, text in haystacks.items():
        for needle in needles:
            assert needle not in text, 'a secret (%s...) appears in %s' % (needle[:12], where)
        squeezed = re.sub(r'\\n|\s', '', text)
        for piece in pieces:
            assert piece not in squeezed, 'DKIM private key material appears in %s' % where


def test_no_secret_in_any_output_log_or_command_line(tmp_path):
    """Two runs at once, one with ANSIBLE_DEBUG=1, while the sampler reads /proc."""
    # Made before the sampler starts: the test's own doveadm calls have test passwords on their command lines.
    setups = [(name, debug, tmp_path / name, _scenario(tmp_path / name))
              for name, debug in (('plain', False), ('debug', True))]
    with ProcSampler() as sampler:
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda item: _run(tmp_path, *item), setups))
    seen = 0
    for (cfg, scenario, play, log), debug in zip(runs, (False, True)):
        needles, pieces = _produced(cfg, scenario)
        haystacks = {'stdout': play.stdout, 'stderr': play.stderr, 'ANSIBLE_LOG_PATH': log}
        assert len(log) > 1000, 'nothing was logged'
        # Nothing the collection made or read, anywhere, even in ansible-core's debug lines.
        _check(haystacks, needles, pieces)
        if debug:
            echoes = sum(len(_CORE_ARGS_ECHO.findall(text)) for text in haystacks.values())
            assert echoes >= len(scenario['tasks']), 'ANSIBLE_DEBUG output was not produced'
            haystacks = dict((k, _CORE_ARGS_ECHO.sub('<ansible-core argument echo>', text))
                             for k, text in haystacks.items())
        # What the tasks passed: nowhere but in ansible-core's own ANSIBLE_DEBUG echo of module arguments.
        _check(haystacks, scenario['args'], [])
        _check({'command lines': '\n'.join(sampler.seen), 'environments': '\n'.join(sampler.environs)},
               needles + scenario['args'], pieces)
        seen += len(needles) + len(pieces) + len(scenario['args'])
        size = sum(len(text) for text in haystacks.values()) // 1024
        note('secrets: %s run, %d tasks of all six modules at -vvvv --diff%s: no password, hash or key chunk '
             'in %d KiB of output and log' % ('ANSIBLE_DEBUG=1' if debug else 'plain', len(scenario['tasks']),
                                              ' with ANSIBLE_DEBUG=1 (task arguments only in ansible-core\'s own '
                                              'argument echo)' if debug else '', size))

    # The sampler really watched the module processes while they ran.
    # (/proc shows every process of the machine: only those under this test's remote_tmp count.)
    modules = set(re.findall(r'%s/\S*AnsiballZ_(dms_[a-z_]+)\.py' % re.escape(str(tmp_path / 'remote-tmp')),
                             '\n'.join(sampler.seen)))
    assert modules == set(re.findall(r"'dms\.mailserver\.(dms_[a-z_]+)'", repr(setups[0][3]['tasks']))), modules
    assert len(modules) == 9, modules
    note('secrets: %d needles checked; %d distinct command lines and %d environments sampled from /proc in %d '
         'rounds, including every module\'s process'
         % (seen, len(sampler.seen), len(sampler.environs), sampler.rounds))


def _ed25519_or_pem(text):
    """Key material of a private key file: PEM, or Rspamd's bare base64 Ed25519 form."""
    if text.lstrip().startswith('-----BEGIN'):
        return _key_material(text)
    body = text.strip()
    raw = base64.b64decode(body)
    return [body[i:i + 32] for i in range(0, len(body) - 31, 32)] + [raw.hex()[:32], raw.hex()[32:64]]


def test_doc_lists_what_is_secret():
    text = (Path(__file__).resolve().parents[2] / 'docs' / 'reliability.md').read_text()
    for word in ('ANSIBLE_DEBUG', 'no_log', 'cmdline'):
        assert word in text, word
