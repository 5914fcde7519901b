# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_dkim end to end: real ansible-playbook, keys checked by dkimpy, openssl and Debian's OpenDKIM."""
from __future__ import annotations

import base64
import os
import re
import stat
import subprocess

import pytest

from dkimtest import (
    BODY, OpenDKIM, config_check, copy_like_dms, dkimpy_sign, dkimpy_verify, headers_for, message_bytes,
    opendkim_conf, openssl_describe, openssl_public_b64, run_testkey, txt_p, unbound_conf,
)
from dmstest import run_play, snapshot

SIGNING_CONF = 'rspamd/override.d/dkim_signing.conf'


def dkim_task(config_dir, **options):
    task = {'dms.mailserver.dms_dkim': dict(config_dir=str(config_dir), **options)}
    return task


def run(tmp_path, config_dir, check=False, diff=False, verbosity=0, **options):
    play = run_play(tmp_path, [dkim_task(config_dir, **options)], check=check, diff=diff, verbosity=verbosity)
    return play


def ok(tmp_path, config_dir, **options):
    play = run(tmp_path, config_dir, **options)
    assert not play.failed, play.stdout + play.stderr
    return play.result


def sign_and_verify(private_text, record, records=None):
    """Sign a message with the written key (dkimpy) and verify it against the returned record (dkimpy)."""
    sender = 'user@' + record['domain']
    message = message_bytes(headers_for(sender))
    signed = dkimpy_sign(message, record['selector'], record['domain'], private_text) + message
    return dkimpy_verify(signed, records if records is not None else {record['name']: record['value']})


# -- acceptance 1: the written key signs, the returned record verifies, openssl agrees on the size ------


@pytest.mark.parametrize('key_type, key_size, backend, openssl_line', [
    ('rsa', 1024, 'opendkim', 'Private-Key: (1024 bit, 2 primes)'),
    ('rsa', 2048, 'opendkim', 'Private-Key: (2048 bit, 2 primes)'),
    ('rsa', 4096, 'opendkim', 'Private-Key: (4096 bit, 2 primes)'),
    ('ed25519', None, 'opendkim', 'ED25519 Private-Key:'),
    ('rsa', 2048, 'rspamd', 'Private-Key: (2048 bit, 2 primes)'),
    ('ed25519', None, 'rspamd', None),
])
def test_written_key_verifies_against_returned_record(tmp_path, key_type, key_size, backend, openssl_line):
    cfg = tmp_path / 'cfg'
    options = dict(domain='example.com', key_type=key_type, backend=backend)
    if key_size:
        options['key_size'] = key_size
    result = ok(tmp_path, cfg, **options)
    record = result['records'][0]
    assert record['name'] == 'mail._domainkey.example.com' and record['type'] == 'TXT'
    assert record['value'].startswith('v=DKIM1; k=%s; p=' % key_type)
    assert ''.join(record['chunks']) == record['value'] and all(len(c) <= 255 for c in record['chunks'])
    assert record['rdata'] == ' '.join('"%s"' % c for c in record['chunks'])
    private = cfg / record['private_key_file']
    private_text = private.read_text()
    assert sign_and_verify(private_text, record) is True
    # Negative control: the same signature does not verify against another key's record.
    other = ok(tmp_path, tmp_path / 'other', **options)['records'][0]
    assert sign_and_verify(private_text, record, {record['name']: other['value']}) is False
    if openssl_line:
        assert openssl_describe(str(private)) == openssl_line
        assert openssl_public_b64(str(private)) == record['value'].split('p=', 1)[1]
    else:  # Rspamd's Ed25519 form is base64 of the seed and the public key, which openssl cannot read
        raw = base64.b64decode(private_text)
        assert len(raw) == 64 and base64.b64encode(raw[32:]).decode() == record['value'].split('p=', 1)[1]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


# -- acceptance 2: Debian's OpenDKIM reads the files as DMS's opendkim.conf points at them -----------


@pytest.mark.parametrize('keytable_refile', [False, True], ids=['KeyTable-file', 'KeyTable-refile'])
def test_opendkim_accepts_and_signs_with_the_files(tmp_path, keytable_refile):
    cfg = tmp_path / 'cfg'
    first = ok(tmp_path, cfg, domain='example.com')
    second = ok(tmp_path, cfg, domain='example.org', key_size=1024)
    records = {r['name']: r for r in first['records'] + second['records']}
    assert first['restart_required'] is True
    assert (cfg / 'opendkim/TrustedHosts').read_text() == '127.0.0.1\nlocalhost\n'
    before = snapshot(cfg)

    etc = str(tmp_path / 'etc-opendkim')
    copy_like_dms(str(cfg), etc)
    conf = tmp_path / 'opendkim.conf'
    conf.write_text(opendkim_conf(etc, keytable_refile=keytable_refile))
    rc, output = config_check(str(conf))
    assert rc == 0, output
    # The check is not vacuous: a missing SigningTable fails it.
    broken = tmp_path / 'broken.conf'
    broken.write_text(opendkim_conf(etc + '-missing', keytable_refile=keytable_refile))
    assert config_check(str(broken))[0] != 0

    with OpenDKIM(str(conf)) as milter:
        for record in records.values():
            sender = 'someone@' + record['domain']
            outcome = milter.sign(sender, headers_for(sender), BODY)
            signature = outcome.header('DKIM-Signature')
            assert signature, (outcome.code, outcome.reply)
            assert 'd=%s;' % record['domain'] in signature and 's=%s;' % record['selector'] in signature
            signed = message_bytes(headers_for(sender), signature=signature)
            assert dkimpy_verify(signed, {r['name']: r['value'] for r in records.values()}) is True
            # And with the other domain's record served instead, it does not verify.
            wrong = [r for r in records.values() if r is not record][0]
            assert dkimpy_verify(signed, {record['name']: wrong['value']}) is False
        stranger = milter.sign('someone@unmanaged.example', headers_for('someone@unmanaged.example'), BODY)
        assert stranger.header('DKIM-Signature') is None

    assert snapshot(cfg) == before
    if keytable_refile:
        return  # opendkim-testkey walks the KeyTable, which it cannot do with a refile: table

    # opendkim-testkey compares each KeyTable key with its TXT record, served by unbound from a local file.
    unbound = tmp_path / 'unbound.conf'
    unbound_conf(str(unbound), {name: r['rdata'] for name, r in records.items()})
    conf.write_text(opendkim_conf(etc, keytable_refile=keytable_refile,
                                  extra='ResolverConfiguration %s\n' % unbound))
    assert run_testkey(str(conf)) == (2, 0)
    unbound_conf(str(unbound), {'mail._domainkey.example.com': records['mail._domainkey.example.org']['rdata'],
                                'mail._domainkey.example.org': records['mail._domainkey.example.org']['rdata']})
    assert run_testkey(str(conf)) == (1, 1)

    # The .txt snippets publish the private keys' public halves (computed by openssl).
    for domain in ('example.com', 'example.org'):
        private = str(cfg / 'opendkim/keys' / domain / 'mail.private')
        assert txt_p((cfg / 'opendkim/keys' / domain / 'mail.txt').read_text()) == openssl_public_b64(private)
    assert snapshot(cfg) == before


def test_opendkim_ed25519_needs_its_signature_algorithm(tmp_path):
    cfg = tmp_path / 'cfg'
    result = ok(tmp_path, cfg, domain='example.com', key_type='ed25519')
    assert any('SignatureAlgorithm' in w for w in result.get('warnings', []))
    record = result['records'][0]
    etc = str(tmp_path / 'etc-opendkim')
    copy_like_dms(str(cfg), etc)
    sender = 'someone@example.com'
    # With an opendkim.conf that signs ed25519-sha256, OpenDKIM loads the PEM key and signs.
    conf = tmp_path / 'ed.conf'
    conf.write_text(opendkim_conf(etc, algorithm='ed25519-sha256'))
    assert config_check(str(conf))[0] == 0
    with OpenDKIM(str(conf)) as milter:
        signature = milter.sign(sender, headers_for(sender), BODY).header('DKIM-Signature')
    assert 'a=ed25519-sha256;' in signature
    assert dkimpy_verify(message_bytes(headers_for(sender), signature=signature),
                         {record['name']: record['value']}) is True
    # With DMS's rsa-sha256 it cannot: the message is deferred. This is what the module's warning says.
    conf.write_text(opendkim_conf(etc))
    with OpenDKIM(str(conf)) as milter:
        outcome = milter.sign(sender, headers_for(sender), BODY)
    assert outcome.header('DKIM-Signature') is None and outcome.code in ('tempfail', 'replycode')


def test_keys_made_by_setup_config_dkim_are_adopted_unchanged(tmp_path):
    """What DMS's `setup config dkim` leaves (opendkim-genkey output, its table lines) is already the desired state."""
    cfg = tmp_path / 'cfg'
    keys = cfg / 'opendkim/keys/example.com'
    keys.mkdir(parents=True)
    subprocess.run(['opendkim-genkey', '--bits=2048', '--subdomains', '--domain=example.com', '--selector=mail',
                    '--directory=%s' % keys], check=True)
    (cfg / 'opendkim/KeyTable').write_text(
        'mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/mail.private\n')
    (cfg / 'opendkim/SigningTable').write_text('*@example.com mail._domainkey.example.com\n')
    (cfg / 'opendkim/TrustedHosts').write_text('127.0.0.1\nlocalhost\n')
    state = snapshot(cfg)
    result = ok(tmp_path, cfg, domain='example.com')
    assert result['changed'] is False and result['records'][0]['action'] == 'keep'
    assert snapshot(cfg) == state
    assert result['records'][0]['value'].split('p=')[1] == txt_p((keys / 'mail.txt').read_text())


# -- acceptance 3: idempotence, rotation, fail, absent --------------------------------------------


def test_rerun_rotate_fail_absent(tmp_path):
    cfg = tmp_path / 'cfg'
    first = ok(tmp_path, cfg, domains=['example.com', 'example.org'], key_size=1024)
    assert first['changed'] is True and first['created'] == ['example.com', 'example.org']
    before = snapshot(cfg)
    again = ok(tmp_path, cfg, domains=['example.com', 'example.org'], key_size=1024)
    assert again['changed'] is False and again['changed_files'] == [] and again['restart_required'] is False
    assert [r['fingerprint'] for r in again['records']] == [r['fingerprint'] for r in first['records']]
    assert [r['value'] for r in again['records']] == [r['value'] for r in first['records']]
    assert snapshot(cfg) == before

    old = first['records'][0]
    rotated = ok(tmp_path, cfg, domain='example.com', key_size=1024, regenerate='always')
    new = rotated['records'][0]
    assert rotated['rotated'] == ['example.com'] and rotated['restart_required'] is True
    assert new['fingerprint'] != old['fingerprint'] and new['value'] != old['value']
    private_text = (cfg / new['private_key_file']).read_text()
    assert sign_and_verify(private_text, new) is True
    assert sign_and_verify(private_text, new, {new['name']: old['value']}) is False
    assert txt_p((cfg / 'opendkim/keys/example.com/mail.txt').read_text()) == new['value'].split('p=')[1]

    rotated_state = snapshot(cfg)
    failed = run(tmp_path, cfg, domain='example.com', key_size=2048, regenerate='fail')
    assert failed.failed
    assert 'domain:' in failed.result['msg'] and 'RSA 1024-bit' in failed.result['msg']
    assert snapshot(cfg) == rotated_state

    kept = ok(tmp_path, cfg, domain='example.com', key_size=2048)
    assert kept['changed'] is False and kept['records'][0]['key_size'] == 1024
    assert any('kept the existing RSA 1024-bit key' in w for w in kept['warnings'])

    gone = ok(tmp_path, cfg, domain='example.com', state='absent')
    assert gone['removed'] == ['example.com'] and gone['restart_required'] is True
    after = snapshot(cfg)
    assert not any('example.com' in path for path in after)
    for path in ('opendkim/keys/example.org/mail.private', 'opendkim/keys/example.org/mail.txt'):
        assert after[path] == before[path]
    assert (cfg / 'opendkim/KeyTable').read_text() == \
        'mail._domainkey.example.org example.org:mail:/etc/opendkim/keys/example.org/mail.private\n'
    assert (cfg / 'opendkim/SigningTable').read_text() == '*@example.org mail._domainkey.example.org\n'
    assert ok(tmp_path, cfg, domain='example.com', state='absent')['changed'] is False


# -- acceptance 4: the Rspamd layout, and both backends side by side ------------------------------

USER_SIGNING_CONF = '''\
# Rspamd DKIM signing settings (a file as DMS's CLI leaves it)

enabled = true;

sign_authenticated = true;
sign_local = false;
try_fallback = false;

use_domain = "header";
use_redis = false; # keys from files
use_esld = true;
allow_username_mismatch = true;

check_pubkey = true; # compare with DNS first

domain {
    hand.example {
        selectors [
            { path = "/tmp/docker-mailserver/rspamd/dkim/hand-rsa.private.txt"; selector = "r"; },
            { path = "/tmp/docker-mailserver/rspamd/dkim/hand-ed.private.txt"; selector = "e"; }
        ]
    }
}

# my own addition
sign_headers = "from:to:subject";
'''


def test_rspamd_layout_and_signing_conf(tmp_path):
    cfg = tmp_path / 'cfg'
    (cfg / 'rspamd/override.d').mkdir(parents=True)
    (cfg / SIGNING_CONF).write_text(USER_SIGNING_CONF)
    rsa_result = ok(tmp_path, cfg, domain='example.com', backend='rspamd')
    ed_result = ok(tmp_path, cfg, domain='example.org', backend='rspamd', key_type='ed25519', selector='ed')
    assert rsa_result['restart_required'] is False and ed_result['restart_required'] is False
    assert sorted(os.listdir(cfg / 'rspamd/dkim')) == [
        'ed25519-ed-example.org.private.txt', 'ed25519-ed-example.org.public.dns.txt',
        'ed25519-ed-example.org.public.txt',
        'rsa-2048-mail-example.com.private.txt', 'rsa-2048-mail-example.com.public.dns.txt',
        'rsa-2048-mail-example.com.public.txt']
    assert (cfg / SIGNING_CONF).read_text() == USER_SIGNING_CONF.replace('''        ]
    }
}
''', '''        ]
    }
    example.com {
        path = "/tmp/docker-mailserver/rspamd/dkim/rsa-2048-mail-example.com.private.txt";
        selector = "mail";
    }
    example.org {
        path = "/tmp/docker-mailserver/rspamd/dkim/ed25519-ed-example.org.private.txt";
        selector = "ed";
    }
}
''')
    for result, base in ((rsa_result, 'rsa-2048-mail-example.com'), (ed_result, 'ed25519-ed-example.org')):
        record = result['records'][0]
        assert record['private_key_file'] == 'rspamd/dkim/%s.private.txt' % base
        public = (cfg / 'rspamd/dkim' / (base + '.public.txt')).read_text()
        assert public.startswith('%s._domainkey IN TXT ( "v=DKIM1; k=%s;' % (record['selector'], record['key_type']))
        dns = (cfg / 'rspamd/dkim' / (base + '.public.dns.txt')).read_text()
        assert txt_p('"%s"' % dns.strip()) == record['value'].split('p=')[1] == txt_p(public)
        assert sign_and_verify((cfg / record['private_key_file']).read_text(), record) is True

    # OpenDKIM for a third domain in the same config dir; nothing interferes, and re-runs change nothing.
    ok(tmp_path, cfg, domain='example.net')
    state = snapshot(cfg)
    for options in (dict(domain='example.com', backend='rspamd'),
                    dict(domain='example.org', backend='rspamd', key_type='ed25519', selector='ed'),
                    dict(domain='example.net')):
        assert ok(tmp_path, cfg, **options)['changed'] is False
    assert snapshot(cfg) == state
    assert 'example.com' not in (cfg / 'opendkim/KeyTable').read_text()
    assert 'example.net' not in (cfg / SIGNING_CONF).read_text()

    removed = ok(tmp_path, cfg, domain='example.com', backend='rspamd', state='absent')
    assert removed['removed'] == ['example.com'] and removed['restart_required'] is False
    text = (cfg / SIGNING_CONF).read_text()
    assert 'example.com' not in text and 'hand.example' in text and 'example.org {' in text
    assert not any(name.endswith('example.com.private.txt') for name in os.listdir(cfg / 'rspamd/dkim'))
    assert (cfg / 'opendkim/keys/example.net/mail.private').exists()


# -- acceptance 5: modes, and no key material anywhere in the output --------------------------------


def test_keys_are_0600_and_never_shown(tmp_path):
    cfg = tmp_path / 'cfg'
    plays, secrets = [], []

    def play(**options):
        # The default output callback, as a user sees it at -vvvv (module arguments and results included).
        result = run_play(tmp_path, [dkim_task(cfg, **options)], diff=True, verbosity=4, json_output=False)
        assert not result.failed, result.stdout + result.stderr
        plays.append(result)
        return result

    play(domains=['example.com', 'example.org'], key_size=1024)
    play(domain='example.net', backend='rspamd', key_type='ed25519')
    for path in (cfg / 'opendkim/keys/example.com/mail.private', cfg / 'opendkim/keys/example.org/mail.private',
                 cfg / 'rspamd/dkim/ed25519-mail-example.net.private.txt'):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secrets.append(path.read_text())
    # Rotation and removal put the old keys into the diff's "before" side: still only fingerprints.
    play(domain='example.com', key_size=1024, regenerate='always')
    secrets.append((cfg / 'opendkim/keys/example.com/mail.private').read_text())
    play(domain='example.org', state='absent')
    play(domain='example.net', backend='rspamd', state='absent')
    output = ''.join(p.stdout + p.stderr for p in plays)
    assert 'private key (not shown)' in output and 'SHA256:' in output
    assert 'opendkim/keys/example.com/mail.private' in output  # the diff and results are really there
    key_lines = [line for text in secrets for line in text.splitlines() if not line.startswith('-----')]
    assert len(key_lines) > 20
    for line in key_lines:
        assert line[:32] not in output
    assert 'PRIVATE KEY' not in output


def test_check_mode_generates_nothing_and_predicts(tmp_path):
    cfg = tmp_path / 'cfg'
    check = run(tmp_path, cfg, check=True, diff=True, domains=['example.com'], key_size=1024)
    assert not check.failed, check.stderr
    assert not cfg.exists()
    result = check.result
    assert result['changed'] is True and result['created'] == ['example.com']
    assert result['records'][0]['value'] is None and result['records'][0]['chunks'] == []
    assert any('a new key, generated when not in check mode' in d['after'] for d in result['diff'])
    real = ok(tmp_path, cfg, domains=['example.com'], key_size=1024)
    assert real['changed_files'] == result['changed_files']
    state = snapshot(cfg)
    rotate_check = run(tmp_path, cfg, check=True, domains=['example.com'], key_size=1024, regenerate='always')
    assert rotate_check.result['rotated'] == ['example.com'] and rotate_check.result['changed'] is True
    assert snapshot(cfg) == state
    assert run(tmp_path, cfg, check=True, domains=['example.com'], key_size=1024).result['changed'] is False


def test_backup_keeps_the_replaced_key(tmp_path):
    cfg = tmp_path / 'cfg'
    ok(tmp_path, cfg, domain='example.com', key_size=1024)
    old = (cfg / 'opendkim/keys/example.com/mail.private').read_text()
    result = ok(tmp_path, cfg, domain='example.com', key_size=1024, regenerate='always', backup=True)
    backups = result['backup_files']
    private_backup = [b for b in backups if os.path.basename(b).startswith('mail.private.')]
    assert len(private_backup) == 1
    with open(private_backup[0]) as handle:
        assert handle.read() == old
    assert stat.S_IMODE(os.stat(private_backup[0]).st_mode) == 0o600


# -- acceptance 6: malformed input fails cleanly, nothing written ----------------------------------

BAD_INPUTS = [
    (dict(domain='exa mple.com'), 'domain'),
    (dict(domain='example..com'), 'domain'),
    (dict(domain='-example.com'), 'domain'),
    (dict(domains=['good.example', 'bad_domain.example']), 'domains[1]'),
    (dict(domains=['a.example', 'A.example']), 'domains[1]'),
    (dict(domain='example.com', selector='my selector'), 'selector'),
    (dict(domain='example.com', selector='.mail'), 'selector'),
    (dict(domain='example.com', selector='mail..2024'), 'selector'),
    (dict(domain='example.com', selector='../../etc'), 'selector'),
    (dict(domain='example.com', key_size=512), 'key_size'),
    (dict(domain='example.com', key_type='ed25519', key_size=2048), 'key_size'),
    (dict(domain='example.com', backend='postfix'), 'backend'),
    (dict(domain='example.com', key_type='dsa'), 'key_type'),
    (dict(domain='example.com', regenerate='sometimes'), 'regenerate'),
    (dict(domain='example.com', domains=['example.org']), 'domain'),
    (dict(selector='mail'), 'domain'),
    (dict(domain='example.com', key_owner=0), 'key_owner'),
]


def test_malformed_input_fails_cleanly(tmp_path):
    cfg = tmp_path / 'cfg'
    ok(tmp_path, cfg, domain='existing.example', key_size=1024)
    ok(tmp_path, cfg, domain='existing.example', backend='rspamd', key_type='ed25519')
    (cfg / 'opendkim/keys/broken.example').mkdir()
    (cfg / 'opendkim/keys/broken.example/mail.private').write_text('not a key\n')
    state = snapshot(cfg)
    tasks = []
    for options, dummy in BAD_INPUTS:
        task = dkim_task(cfg, **options)
        task['ignore_errors'] = True
        tasks.append(task)
    bad_conf_task = dkim_task(cfg, domain='example.com', backend='rspamd')
    bad_conf_task['ignore_errors'] = True
    broken_key_task = dkim_task(cfg, domain='broken.example')
    broken_key_task['ignore_errors'] = True
    play = run_play(tmp_path, tasks + [broken_key_task])
    assert len(play.tasks) == len(BAD_INPUTS) + 1
    for (options, field), result in zip(BAD_INPUTS, play.tasks):
        assert result.get('failed') is True, (options, result)
        assert field in result['msg'], (options, result['msg'])
    assert 'opendkim/keys/broken.example/mail.private' in play.tasks[-1]['msg']
    assert snapshot(cfg) == state
    # A dkim_signing.conf that cannot be edited safely is refused, with every file unchanged.
    (cfg / SIGNING_CONF).write_text('domain {\n    a { path = "x";\n')
    state = snapshot(cfg)
    refused = run_play(tmp_path, [bad_conf_task]).tasks[0]
    assert refused['failed'] is True and 'dkim_signing.conf' in refused['msg'] and 'line' in refused['msg']
    assert snapshot(cfg) == state
    assert not re.search(r'BEGIN|PRIVATE', str(play.tasks))
