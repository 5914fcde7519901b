# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the dms_dkim logic: key formats, record text, the dkim_signing.conf editor, the plan."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ansible_collections.dms.mailserver.plugins.module_utils import _dkim
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
RSA_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key, fmt=None):
    return key.private_bytes(serialization.Encoding.PEM, fmt or serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def spki_b64(key):
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


# -- record text ------------------------------------------------------------------------------


def test_record_value_chunks_and_rdata():
    info = _dkim.KeyInfo(RSA_2048)
    value = _dkim.record_value(info.type, info.p)
    assert value == 'v=DKIM1; k=rsa; p=' + spki_b64(RSA_2048)
    chunks = _dkim.split_chunks(value)
    assert len(chunks) == 2
    assert all(len(chunk) <= 255 for chunk in chunks) and len(chunks[0]) == 255
    assert ''.join(chunks) == value
    assert _dkim.rdata(chunks) == '"%s" "%s"' % tuple(chunks)
    short = _dkim.record_value('ed25519', 'A' * 44)
    assert _dkim.split_chunks(short) == [short]


def test_fingerprint_is_sha256_of_published_key():
    info = _dkim.KeyInfo(RSA_1024)
    digest = hashlib.sha256(base64.b64decode(info.p)).digest()
    assert info.fingerprint == 'SHA256:' + base64.b64encode(digest).decode().rstrip('=')
    assert info.describe() == 'RSA 1024-bit' and info.matches('rsa', 1024) and not info.matches('rsa', 2048)
    ed = _dkim.KeyInfo(ed25519.Ed25519PrivateKey.generate())
    assert len(base64.b64decode(ed.p)) == 32 and ed.describe() == 'Ed25519' and ed.matches('ed25519', None)


@pytest.mark.skipif(not shutil.which('opendkim-genkey'), reason='needs opendkim-genkey (Debian opendkim-tools)')
@pytest.mark.parametrize('bits', [1024, 2048, 4096])
def test_opendkim_txt_has_opendkim_genkey_layout(tmp_path, bits):
    """Our snippet is byte for byte what opendkim-genkey writes with DMS's options, minus its h= tag."""
    subprocess.run(['opendkim-genkey', '--bits=%d' % bits, '--subdomains', '--domain=example.com',
                    '--selector=s2024', '--directory=%s' % tmp_path], check=True)
    genkey_txt = (tmp_path / 's2024.txt').read_text()
    info = _dkim.load_private_key((tmp_path / 's2024.private').read_text(), 's2024.private')
    assert info.type == 'rsa' and info.size == bits
    ours = _dkim.opendkim_txt('s2024', 'example.com', 'rsa', info.p)
    assert ours == genkey_txt.replace(' h=sha256;', '')
    assert ours.endswith('; ----- DKIM key s2024 for example.com\n')
    assert _dkim.txt_public_key(genkey_txt) == info.p


def test_rspamd_public_txt_layouts():
    short = _dkim.rspamd_public_txt('mail', 'ed25519', 'K' * 44)
    assert short == 'mail._domainkey IN TXT ( "v=DKIM1; k=ed25519;" \n\t"p=%s" ) ;\n' % ('K' * 44)
    p = 'x' * 392
    long_ = _dkim.rspamd_public_txt('mail', 'rsa', p)
    assert long_ == ('mail._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n\t"p=%s"\n\t"%s"\n) ; \n' % (p[:253], p[253:]))


@pytest.mark.parametrize('p', ['K' * 44, 'y' * 216, 'z' * 392, 'w' * 736])
def test_rspamd_public_dns_txt_is_what_dms_derives(tmp_path, p):
    """public.dns.txt equals the output of DMS's own shell pipeline run on public.txt."""
    public = tmp_path / 'x.public.txt'
    public.write_text(_dkim.rspamd_public_txt('mail', 'rsa', p))
    dms = subprocess.run(['bash', '-c', 'grep -o \'".*"\' "$1" | tr -d \'"\\n\'; echo \'\'', 'x', str(public)],
                         capture_output=True, text=True, check=True).stdout
    assert _dkim.rspamd_public_dns_txt(public.read_text()) == dms
    assert _dkim.txt_public_key(dms) == p


def test_txt_public_key():
    assert _dkim.txt_public_key('v=DKIM1; k=rsa; p=ABC') == 'ABC'
    assert _dkim.txt_public_key('x IN TXT ( "v=DKIM1; k=rsa; "\n  "p=AB"\n  "CD" )') == 'ABCD'
    assert _dkim.txt_public_key('nothing here') is None
    assert _dkim.txt_public_key(None) is None


# -- key files ----------------------------------------------------------------------------------


def test_load_pem_pkcs8_and_pkcs1_rsa():
    for text in (pem(RSA_1024), pem(RSA_1024, serialization.PrivateFormat.TraditionalOpenSSL)):
        info = _dkim.load_private_key(text, 'k')
        assert info.type == 'rsa' and info.size == 1024 and info.p == spki_b64(RSA_1024)


def test_ed25519_formats_round_trip():
    key = ed25519.Ed25519PrivateKey.generate()
    info = _dkim.KeyInfo(key)
    rspamd_text = _dkim.rspamd_private_text(info)
    assert '\n' not in rspamd_text and len(base64.b64decode(rspamd_text)) == 64
    assert _dkim.load_private_key(rspamd_text, 'k').p == info.p
    seed = base64.b64decode(rspamd_text)[:32]
    assert _dkim.load_private_key(base64.b64encode(seed).decode() + '\n', 'k').p == info.p
    assert _dkim.load_private_key(_dkim.pem_pkcs8(info), 'k').p == info.p
    assert _dkim.pem_pkcs8(info).startswith('-----BEGIN PRIVATE KEY-----\n')


@pytest.mark.parametrize('text', [
    'garbage that is not a key',
    base64.b64encode(os.urandom(100)).decode(),
    '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
])
def test_unreadable_key_names_the_file_not_the_content(text):
    with pytest.raises(_dkim.KeyFileError) as err:
        _dkim.load_private_key(text, 'opendkim/keys/example.com/mail.private')
    assert 'opendkim/keys/example.com/mail.private' in str(err.value)
    assert text.strip() not in str(err.value)


def test_inconsistent_rspamd_ed25519_key_is_refused():
    one, two = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    raw_one = base64.b64decode(_dkim.rspamd_private_text(_dkim.KeyInfo(one)))
    raw_two = base64.b64decode(_dkim.rspamd_private_text(_dkim.KeyInfo(two)))
    with pytest.raises(_dkim.KeyFileError, match='inconsistent'):
        _dkim.load_private_key(base64.b64encode(raw_one[:32] + raw_two[32:]).decode(), 'k')


def test_diff_text_never_contains_key_material():
    info = _dkim.KeyInfo(RSA_1024)
    text = _dkim.key_diff_text(info)
    assert info.fingerprint in text and 'RSA 1024-bit' in text
    body = pem(RSA_1024).splitlines()[1]
    assert body not in text and info.p not in text


# -- dkim_signing.conf -------------------------------------------------------------------------

DMS_DEFAULT = '''\
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
    example.com {
        path = "/tmp/docker-mailserver/rspamd/dkim/rsa-2048-mail-example.com.private.txt";
        selector = "mail";
    }
}

'''

P = '/tmp/docker-mailserver/rspamd/dkim/%s'


def test_conf_missing_file_gets_dms_defaults():
    conf = _dkim.SigningConf(None)
    conf.set('example.com', P % 'a.private.txt', 'mail')
    text = conf.render()
    assert text.startswith(_dkim.DEFAULT_SIGNING_CONF.partition('domain {')[0])
    assert 'domain {\n    example.com {\n        path = "%s";\n        selector = "mail";\n    }\n}\n' \
        % (P % 'a.private.txt') in text
    assert _dkim.SigningConf(text).get('example.com') == (P % 'a.private.txt', 'mail')


def test_conf_identical_entry_keeps_bytes():
    conf = _dkim.SigningConf(DMS_DEFAULT)
    assert conf.set('example.com', P % 'rsa-2048-mail-example.com.private.txt', 'mail') is False
    assert conf.render() is DMS_DEFAULT


def test_conf_adds_a_domain_inside_the_existing_block_only():
    conf = _dkim.SigningConf(DMS_DEFAULT)
    assert conf.set('example.org', P % 'ed25519-mail-example.org.private.txt', 'mail')
    text = conf.render()
    added = ('    example.org {\n        path = "%s";\n        selector = "mail";\n    }\n'
             % (P % 'ed25519-mail-example.org.private.txt'))
    assert text == DMS_DEFAULT.replace('    }\n}\n', '    }\n' + added + '}\n')


def test_conf_replaces_and_removes_only_its_domains():
    user = DMS_DEFAULT.replace('domain {\n', '''domain {
    # hand-made dual signing, with braces in comments } {
    example.net {
        selectors [
            { path = "/keys/rsa.key"; selector = "r"; },
            { path = "/keys/ed.key"; selector = "e"; }
        ]
    }
    /* a { block } comment */
''') + 'custom_setting = "value with { braces }";\n'
    conf = _dkim.SigningConf(user)
    conf.set('example.com', P % 'rsa-4096-mail-example.com.private.txt', 'mail')
    text = conf.render()
    assert text == user.replace('rsa-2048-mail-example.com', 'rsa-4096-mail-example.com')
    conf = _dkim.SigningConf(text)
    assert conf.remove('example.com')
    removed = conf.render()
    assert 'example.com' not in removed
    assert removed == re.sub(r'    example\.com \{\n.*?\n    \}\n', '', text, flags=re.S)
    assert 'example.net {' in removed and 'custom_setting = "value with { braces }";' in removed


def test_conf_quoted_keys_duplicates_and_one_line_block():
    text = 'domain { "Example.com" { path = "/x"; selector = "old"; } example.com { path = "/y"; } }\n'
    conf = _dkim.SigningConf(text)
    assert conf.get('example.com') == ('/x', 'old')
    conf.set('example.com', '/z', 'mail')
    out = conf.render()
    assert out.count('example.com') == 1 and '"/y"' not in out
    assert _dkim.SigningConf(out).get('example.com') == ('/z', 'mail')
    conf = _dkim.SigningConf('domain {}\n')
    conf.set('example.org', '/k', 's')
    assert _dkim.SigningConf(conf.render()).get('example.org') == ('/k', 's')


def test_conf_without_domain_block_gets_one_appended():
    text = '.include(try=true,priority=1) "$LOCAL_CONFDIR/local.d/extra.conf"\nenabled = true;'
    conf = _dkim.SigningConf(text)
    conf.set('example.com', '/k', 'mail')
    out = conf.render()
    assert out.startswith(text + '\n\ndomain {\n    example.com {\n')
    assert _dkim.SigningConf(out).get('example.com') == ('/k', 'mail')


@pytest.mark.parametrize('text, problem', [
    ('domain { a { path = "x"; }\n', 'unbalanced'),
    ('domain { a { path = "x; } }\n', 'unterminated string'),
    ('domain { }\ndomain { }\n', 'more than one top-level "domain" block'),
    ('/* open comment\n', 'unterminated /* comment'),
    ('domain = "x";\n', 'is not a block of entries'),
])
def test_conf_that_cannot_be_edited_safely_is_refused(text, problem):
    with pytest.raises(ValidationError) as err:
        _dkim.SigningConf(text)
    assert problem in str(err.value) and 'dkim_signing.conf' in str(err.value)


# -- option validation --------------------------------------------------------------------------


def params(**kw):
    base = dict(domain=None, domains=None, selector='mail', key_type=None, key_size=None, backend='opendkim',
                regenerate='never', state='present', key_owner=None, key_group=None)
    base.update(kw)
    return base


@pytest.mark.parametrize('kw, field, problem', [
    (dict(domain='exa mple.com'), 'domain', 'white space'),
    (dict(domain='example..com'), 'domain', 'empty label'),
    (dict(domain='-bad.example.com'), 'domain', 'inner hyphens'),
    (dict(domain='exämple.com'), 'domain', 'non-ASCII'),
    (dict(domain='192.168.1.1'), 'domain', 'numeric'),
    (dict(domains=['ok.example.com', 'bad_domain.com']), 'domains[1]', 'letters, digits'),
    (dict(domains=['a.example.com', 'A.example.com']), 'domains[1]', 'listed twice'),
    (dict(domains=[]), 'domains', 'at least one'),
    (dict(domain='example.com', selector='mail sel'), 'selector', 'white space'),
    (dict(domain='example.com', selector='.mail'), 'selector', 'empty label'),
    (dict(domain='example.com', selector='mail.'), 'selector', 'empty label'),
    (dict(domain='example.com', selector='a..b'), 'selector', 'empty label'),
    (dict(domain='example.com', selector='../etc'), 'selector', 'empty label'),
    (dict(domain='example.com', selector='a/b'), 'selector', 'letters, digits'),
    (dict(domain='example.com', key_size=512), 'key_size', '1024, 2048 or 4096'),
    (dict(domain='example.com', key_type='ed25519', key_size=2048), 'key_size', 'key_type=ed25519'),
    (dict(domain='example.com', state='absent', key_size=2048), 'key_size', 'state=absent'),
    (dict(domain='example.com', key_owner=101), 'key_owner', 'backend=rspamd'),
    (dict(domain='example.com', backend='rspamd', key_group=-1), 'key_group', '0 or more'),
    (dict(domain=('a' * 60 + '.') * 4 + 'com'), 'domain', 'longer than 253'),
])
def test_bad_options_name_the_field(kw, field, problem):
    with pytest.raises(ValidationError) as err:
        _dkim.normalize(params(**kw))
    message = str(err.value)
    assert message.startswith(field + ':') or message.startswith(field + ' '), message
    assert problem in message, message


def test_normalize_defaults_and_warnings():
    entries, options, warnings = _dkim.normalize(params(domains=['Example.COM', 'example.org']))
    assert [e['domain'] for e in entries] == ['example.com', 'example.org']
    assert entries[0]['name'] == 'mail._domainkey.example.com'
    assert options['key_type'] == 'rsa' and options['key_size'] == 2048
    assert len(warnings) == 1 and 'Example.COM' in warnings[0]
    dummy, options, warnings = _dkim.normalize(params(domain='example.com', key_type='ed25519'))
    assert options['key_size'] is None and 'SignatureAlgorithm' in warnings[0]
    dummy, dummy, warnings = _dkim.normalize(params(domain='example.com', key_type='ed25519', backend='rspamd'))
    assert warnings == []


# -- the plan against a real config dir ------------------------------------------------------------


def fast_generate(key_type, key_size):
    """RSA 1024 stands in for every size where the size does not matter to the test (generation is slow)."""
    if key_type == 'rsa':
        return _dkim.KeyInfo(RSA_1024 if key_size == 1024 else rsa.generate_private_key(65537, key_size))
    return _dkim.generate_key(key_type, key_size)


def run(config_dir, check=False, generate=fast_generate, **kw):
    entries, options, warnings = _dkim.normalize(params(**kw))
    with ConfigDir(str(config_dir), check_mode=check) as cfg:
        result = _dkim.plan(cfg, entries, options, generate=generate)
        result['diff'] = cfg.diff()
        result['changed_files'], dummy = cfg.commit(extra_mode_fixes=result.pop('_mode_fixes'),
                                                    extra_owner_fixes=result.pop('_owner_fixes'))
    result['warnings'] = warnings + result.pop('_warnings')
    return result


def tree(directory):
    out = {}
    for root, dummy, files in os.walk(directory):
        for name in files:
            if name != '.dms-mailserver.lock':
                path = os.path.join(root, name)
                with open(path, 'rb') as handle:
                    out[os.path.relpath(path, directory)] = handle.read()
    return out


def no_generation(*args):
    raise AssertionError('a key was generated')


def test_opendkim_create_then_idempotent(tmp_path):
    cfg = tmp_path / 'cfg'
    (cfg / 'opendkim').mkdir(parents=True)
    (cfg / 'opendkim/KeyTable').write_text('# mine\nmail._domainkey.other.org other.org:mail:/etc/opendkim/keys/'
                                           'other.org/mail.private\n')
    (cfg / 'opendkim/SigningTable').write_text('*@other.org mail._domainkey.other.org\n')
    (cfg / 'opendkim/TrustedHosts').write_text('127.0.0.1\n10.0.0.0/8\n')
    result = run(cfg, domain='example.com', key_size=1024)
    assert result['created'] == ['example.com'] and result['restart_required'] is True
    assert (cfg / 'opendkim/KeyTable').read_text() == (
        '# mine\nmail._domainkey.other.org other.org:mail:/etc/opendkim/keys/other.org/mail.private\n'
        'mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/mail.private\n')
    assert (cfg / 'opendkim/SigningTable').read_text() == (
        '*@other.org mail._domainkey.other.org\n*@example.com mail._domainkey.example.com\n')
    assert (cfg / 'opendkim/TrustedHosts').read_text() == '127.0.0.1\n10.0.0.0/8\n'
    private = cfg / 'opendkim/keys/example.com/mail.private'
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    record = result['records'][0]
    assert record['value'] == 'v=DKIM1; k=rsa; p=' + spki_b64(RSA_1024)
    assert record['action'] == 'create' and record['private_key_file'] == 'opendkim/keys/example.com/mail.private'
    before = tree(cfg)
    again = run(cfg, generate=no_generation, domain='example.com', key_size=1024)
    assert again['changed_files'] == [] and again['restart_required'] is False
    assert again['records'][0]['value'] == record['value'] and again['records'][0]['action'] == 'keep'
    assert tree(cfg) == before


def test_opendkim_new_selector_replaces_the_signing_line(tmp_path):
    cfg = tmp_path / 'cfg'
    run(cfg, domain='example.com', key_size=1024)
    run(cfg, domain='example.com', key_size=1024, selector='s2')
    assert (cfg / 'opendkim/SigningTable').read_text() == '*@example.com s2._domainkey.example.com\n'
    keytable = (cfg / 'opendkim/KeyTable').read_text()
    assert 'mail._domainkey.example.com' in keytable and 's2._domainkey.example.com' in keytable
    assert (cfg / 'opendkim/keys/example.com/mail.private').exists()


def test_regenerate_policies(tmp_path):
    cfg = tmp_path / 'cfg'
    first = run(cfg, domain='example.com', key_size=1024)['records'][0]
    before = tree(cfg)
    kept = run(cfg, generate=no_generation, domain='example.com')
    assert kept['records'][0]['fingerprint'] == first['fingerprint'] and kept['changed_files'] == []
    assert any('kept the existing RSA 1024-bit key' in w for w in kept['warnings'])
    with pytest.raises(ValidationError, match='regenerate=fail') as err:
        run(cfg, generate=no_generation, domain='example.com', key_size=2048, regenerate='fail')
    assert 'RSA 1024-bit' in str(err.value) and 'domain:' in str(err.value)
    assert tree(cfg) == before
    same = run(cfg, generate=no_generation, domain='example.com', key_size=1024, regenerate='fail')
    assert same['changed_files'] == []
    rotated = run(cfg, domain='example.com', key_type='ed25519', regenerate='always')
    assert rotated['rotated'] == ['example.com'] and rotated['records'][0]['key_type'] == 'ed25519'
    assert rotated['records'][0]['fingerprint'] != first['fingerprint']
    assert 'opendkim/keys/example.com/mail.txt' in rotated['changed_files']


def test_unreadable_key_fails_unless_always(tmp_path):
    cfg = tmp_path / 'cfg'
    (cfg / 'opendkim/keys/example.com').mkdir(parents=True)
    (cfg / 'opendkim/keys/example.com/mail.private').write_text('not a key\n')
    with pytest.raises(ValidationError, match='opendkim/keys/example.com/mail.private'):
        run(cfg, domain='example.com')
    result = run(cfg, domain='example.com', key_size=1024, regenerate='always')
    assert result['rotated'] == ['example.com']


def test_absent_removes_only_that_domain(tmp_path):
    cfg = tmp_path / 'cfg'
    run(cfg, domains=['example.com', 'example.org'], key_size=1024)
    (cfg / 'opendkim/SigningTable').write_text((cfg / 'opendkim/SigningTable').read_text()
                                               + '*@sub.example.com mail._domainkey.example.com\n')
    result = run(cfg, domain='example.com', state='absent')
    assert result['removed'] == ['example.com'] and result['restart_required'] is True
    assert (cfg / 'opendkim/KeyTable').read_text() == \
        'mail._domainkey.example.org example.org:mail:/etc/opendkim/keys/example.org/mail.private\n'
    assert (cfg / 'opendkim/SigningTable').read_text() == '*@example.org mail._domainkey.example.org\n'
    assert not (cfg / 'opendkim/keys/example.com/mail.private').exists()
    assert (cfg / 'opendkim/keys/example.org/mail.private').exists()
    assert run(cfg, domain='example.com', state='absent')['changed_files'] == []


def test_check_mode_generates_and_writes_nothing(tmp_path):
    cfg = tmp_path / 'cfg'
    result = run(cfg, check=True, generate=no_generation, domains=['example.com'], backend='rspamd')
    assert not cfg.exists()
    assert result['created'] == ['example.com']
    assert result['records'][0]['value'] is None and result['records'][0]['chunks'] == []
    assert set(result['changed_files']) == {
        'rspamd/dkim/rsa-2048-mail-example.com.private.txt', 'rspamd/dkim/rsa-2048-mail-example.com.public.txt',
        'rspamd/dkim/rsa-2048-mail-example.com.public.dns.txt', 'rspamd/override.d/dkim_signing.conf'}
    real = run(cfg, domains=['example.com'], backend='rspamd')
    assert real['changed_files'] == result['changed_files']


def test_rspamd_layout_rotation_and_adoption(tmp_path):
    cfg = tmp_path / 'cfg'
    dkim_dir = cfg / 'rspamd/dkim'
    dkim_dir.mkdir(parents=True)
    # A key as DMS's `setup config dkim` would have left it (PKCS#1 PEM, no dkim_signing.conf entry yet).
    (dkim_dir / 'rsa-1024-mail-example.com.private.txt').write_text(
        pem(RSA_1024, serialization.PrivateFormat.TraditionalOpenSSL))
    adopted = run(cfg, generate=no_generation, domain='example.com', key_size=1024, backend='rspamd')
    assert adopted['records'][0]['action'] == 'keep' and adopted['updated'] == ['example.com']
    assert adopted['restart_required'] is False
    assert adopted['records'][0]['value'] == 'v=DKIM1; k=rsa; p=' + spki_b64(RSA_1024)
    assert (dkim_dir / 'rsa-1024-mail-example.com.public.dns.txt').read_text() == \
        'v=DKIM1; k=rsa;p=%s\n' % spki_b64(RSA_1024)
    assert _dkim.SigningConf((cfg / _dkim.RSPAMD_SIGNING_CONF).read_text()).get('example.com') == (
        '/tmp/docker-mailserver/rspamd/dkim/rsa-1024-mail-example.com.private.txt', 'mail')
    rotated = run(cfg, domain='example.com', key_size=2048, backend='rspamd', regenerate='always')
    assert sorted(os.listdir(dkim_dir)) == ['rsa-2048-mail-example.com.private.txt',
                                            'rsa-2048-mail-example.com.public.dns.txt',
                                            'rsa-2048-mail-example.com.public.txt']
    assert rotated['restart_required'] is False and rotated['rotated'] == ['example.com']
    assert _dkim.SigningConf((cfg / _dkim.RSPAMD_SIGNING_CONF).read_text()).get('example.com')[0].endswith(
        'rsa-2048-mail-example.com.private.txt')
    gone = run(cfg, domain='example.com', backend='rspamd', state='absent')
    assert gone['removed'] == ['example.com'] and os.listdir(dkim_dir) == []
    assert 'example.com' not in (cfg / _dkim.RSPAMD_SIGNING_CONF).read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason='setting owners needs root')
def test_rspamd_key_owner(tmp_path):
    cfg = tmp_path / 'cfg'
    run(cfg, domain='example.com', key_type='ed25519', backend='rspamd', key_owner=4321, key_group=4322)
    private = cfg / 'rspamd/dkim/ed25519-mail-example.com.private.txt'
    assert (private.stat().st_uid, private.stat().st_gid) == (4321, 4322)
    os.chown(private, 0, 0)
    fixed = run(cfg, generate=no_generation, domain='example.com', key_type='ed25519', backend='rspamd',
                key_owner=4321, key_group=4322)
    assert fixed['changed_files'] == ['rspamd/dkim/ed25519-mail-example.com.private.txt']
    assert (private.stat().st_uid, private.stat().st_gid) == (4321, 4322)
    # Without the options, new files inherit the owner of rspamd/dkim (what DMS gives to _rspamd).
    os.chown(cfg / 'rspamd/dkim', 555, 556)
    run(cfg, domain='example.org', key_type='ed25519', backend='rspamd')
    other = cfg / 'rspamd/dkim/ed25519-mail-example.org.private.txt'
    assert (other.stat().st_uid, other.stat().st_gid) == (555, 556)


def test_both_backends_in_one_config_dir(tmp_path):
    cfg = tmp_path / 'cfg'
    run(cfg, domain='a.example', key_size=1024)
    run(cfg, domain='b.example', key_type='ed25519', backend='rspamd')
    before = tree(cfg)
    assert run(cfg, generate=no_generation, domain='a.example', key_size=1024)['changed_files'] == []
    assert run(cfg, generate=no_generation, domain='b.example', key_type='ed25519',
               backend='rspamd')['changed_files'] == []
    assert tree(cfg) == before
    assert 'b.example' not in (cfg / 'opendkim/KeyTable').read_text()
    assert 'a.example' not in (cfg / _dkim.RSPAMD_SIGNING_CONF).read_text()
