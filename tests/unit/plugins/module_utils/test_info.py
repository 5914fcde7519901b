# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for dms_info (plugins/module_utils/_info.py) and the read APIs it uses in the state modules' files."""
from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ansible_collections.dms.mailserver.plugins.module_utils import _dkim, _info, _relay, _ucl
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

HASH = '{SHA512-CRYPT}$6$abcdefghijklmnop$' + 'x' * 86
ARGON = '{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$' + 'y' * 43
RELAY_PW = 'Unit-Info-Relay-Pw-4d1'

FIXTURE = {
    'postfix-accounts.cf': '# accounts\nalice@example.com|%s\nbob@example.com|%s|userdb_mail=maildir:~/x\n'
                           'jimbob@example.com|%s\n' % (HASH, ARGON, HASH),
    'dovecot-quotas.cf': 'alice@example.com:10M\njimbob@example.com:5M\nbob@example.com:20M\n',
    'postfix-send-access.cf': 'bob@example.com \t\t REJECT\n',
    'postfix-virtual.cf': 'info@example.com alice@example.com,bob@example.com\nalice@example.com alice@example.com\n'
                          '@example.com admin@example.org\nroot postmaster@example.com\n',
    'postfix-regexp.cf': '/^sales-.*@example\\.com$/ alice@example.com\n/^ops@/ bob@example.com\n',
    'postfix-relaymap.cf': '@example.com [smtp.mailgun.org]:587\n@internal.example.net \n@plain.example smtp.x.test\n',
    'postfix-sasl-password.cf': '@example.com postmaster@mg:%s\n[ses.example]:587 user:%s\n' % (RELAY_PW, RELAY_PW),
    'postfix-main.cf': 'message_size_limit = 1000\n# c\nsmtpd_banner = x\n  y\n',
    'postfix-master.cf': 'submission/inet/smtpd_reject_unlisted_recipient=yes\n',
    'dovecot.cf': 'mail_max_userip_connections = 50\nprotocol imap {\n  mail_plugins = $mail_plugins\n}\n',
    'user-patches.sh': '#!/bin/bash\n',
}


def write(base, files):
    for relpath, text in files.items():
        path = base / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def snapshot(base):
    return dict((str(p.relative_to(base)), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in sorted(base.rglob('*')) if p.is_file())


def run(base, **params):
    with ConfigDir(str(base), check_mode=True) as cfg:
        return _info.run(cfg, params)


@pytest.fixture
def config(tmp_path):
    write(tmp_path, FIXTURE)
    return tmp_path


# -- gather ------------------------------------------------------------------------------------------------


def test_accounts_in_file_order_without_hashes(config):
    result = run(config, gather=['accounts'])
    assert result['sections'] == ['accounts'] and 'aliases' not in result
    accounts = result['accounts']
    assert [a['address'] for a in accounts] == ['alice@example.com', 'bob@example.com', 'jimbob@example.com']
    alice, bob, jimbob = accounts
    # Lean records: no restriction, no extra fields -> no key (alice); no alias, restriction... -> no key (jimbob).
    assert alice == dict(address='alice@example.com', scheme='SHA512-CRYPT', quota='10M',
                         aliases=['info@example.com', 'alice@example.com'])
    assert bob['scheme'] == 'ARGON2ID' and bob['extra_fields'] is True and bob['restrict'] == ['send']
    assert bob['aliases'] == ['info@example.com']
    # DMS's quota lookup is a substring match: jimbob's line stands before bob's and wins.
    assert bob['quota'] == '20M' and bob['quota_applied'] == '5M'
    assert jimbob == dict(address='jimbob@example.com', scheme='SHA512-CRYPT', quota='5M')
    assert HASH not in repr(result) and '$6$' not in repr(result) and 'argon2id$' not in repr(result)


def test_aliases_in_file_order_with_catch_all_and_self_alias_marked(config):
    aliases = run(config, gather=['aliases'])['aliases']
    assert [(a['type'], a['alias']) for a in aliases] == [
        ('virtual', 'info@example.com'), ('virtual', 'alice@example.com'), ('virtual', '@example.com'),
        ('virtual', 'root'), ('regexp', '/^sales-.*@example\\.com$/'), ('regexp', '/^ops@/')]
    assert aliases[0]['recipients'] == ['alice@example.com', 'bob@example.com']
    assert aliases[1]['self_alias'] and not aliases[0]['self_alias'] and aliases[2]['catch_all']
    assert not aliases[1]['catch_all']


def test_relays_never_show_a_password(config):
    relays = run(config, gather=['relays'])['relays']
    assert relays == [
        dict(key='@example.com', domain='example.com', host='smtp.mailgun.org', port=587, exclude=False,
             credentials=True),
        dict(key='@internal.example.net', domain='internal.example.net', host=None, port=None, exclude=True,
             credentials=False),
        dict(key='@plain.example', domain='plain.example', host='smtp.x.test', port=None, exclude=False,
             credentials=False),
        dict(key='[ses.example]:587', domain=None, host='ses.example', port=587, exclude=False, credentials=True),
    ]
    assert RELAY_PW not in repr(relays)


@pytest.mark.parametrize('value,expected', [
    ('[smtp.x]:587', ('smtp.x', 587)), ('smtp.x:25', ('smtp.x', 25)), ('[smtp.x]', ('smtp.x', None)),
    ('smtp.x', ('smtp.x', None)), ('[2001:db8::1]:587', ('2001:db8::1', 587)),
])
def test_split_relay_value(value, expected):
    assert _relay.split_relay_value(value) == expected


def test_config_files_with_key_names_only(config):
    files = run(config, gather=['config'])['config']
    by_name = dict((f['file'], f) for f in files)
    assert sorted(by_name) == ['dovecot.cf', 'postfix-main.cf', 'postfix-master.cf', 'user-patches.sh']
    assert by_name['postfix-main.cf']['settings'] == ['message_size_limit', 'smtpd_banner']
    assert by_name['postfix-master.cf']['services'] == ['submission/inet/smtpd_reject_unlisted_recipient']
    assert by_name['dovecot.cf']['settings'] == ['mail_max_userip_connections']
    assert by_name['dovecot.cf']['sections'] == ['protocol imap']
    assert by_name['user-patches.sh'] == dict(file='user-patches.sh', kind='content', applies='container_start')
    assert '1000' not in repr(files)


def test_broken_dovecot_cf_is_reported_not_fatal(tmp_path):
    write(tmp_path, {'dovecot.cf': 'a = 1\n}\n'})
    files = run(tmp_path, gather=['config'])['config']
    assert 'closes a section' in files[0]['error']


def dkim_plan(base, backend, domain, key, selector='mail'):
    entries, options, dummy = _dkim.normalize(dict(domain=domain, domains=None, selector=selector, backend=backend,
                                                   key_type='ed25519' if isinstance(key, ed25519.Ed25519PrivateKey)
                                                   else 'rsa', key_size=None if isinstance(
                                                       key, ed25519.Ed25519PrivateKey) else key.key_size,
                                                   regenerate='never', state='present'))
    with ConfigDir(str(base)) as cfg:
        result = _dkim.plan(cfg, entries, options, generate=lambda t, s: _dkim.KeyInfo(key))
        cfg.commit()
    return result['records']


def test_dkim_records_are_exactly_what_dms_dkim_returns(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    opendkim = dkim_plan(tmp_path, 'opendkim', 'example.com', rsa_key)
    rspamd = dkim_plan(tmp_path, 'rspamd', 'example.org', ed_key, selector='s2')
    records = run(tmp_path, gather=['dkim'])['dkim']
    expected = [dict(r, action='keep') for r in opendkim + rspamd]
    assert records == expected
    # A second dms_dkim run (which keeps the keys) returns the very same records.
    assert dkim_plan(tmp_path, 'opendkim', 'example.com', rsa_key) == [expected[0]]


def test_dkim_unreadable_key_names_the_file(tmp_path):
    write(tmp_path, {'opendkim/KeyTable': 'mail._domainkey.x.test x.test:mail:/etc/opendkim/keys/x.test/mail.private\n',
                     'opendkim/keys/x.test/mail.private': 'not a key\n'})
    record = run(tmp_path, gather=['dkim'])['dkim'][0]
    assert record['value'] is None and record['error'].startswith('opendkim/keys/x.test/mail.private')
    assert 'not a key' not in record['error']


def test_signing_conf_domains_in_file_order():
    conf = _ucl.SigningConf('domain {\n  b.test { path = "/p/b"; selector = "s"; }\n'
                            '  a.test { path = "/p/a"; selector = "t"; }\n  c.test = "x";\n}\n')
    assert conf.domains() == [('b.test', '/p/b', 's'), ('a.test', '/p/a', 't'), ('c.test', None, None)]


def test_an_empty_gather_reads_no_section(config):
    result = run(config, gather=[])
    assert result['sections'] == [] and not any(name in result for name in _info.SECTIONS)


def test_missing_config_dir_reads_as_empty_and_is_not_created(tmp_path):
    missing = tmp_path / 'nope'
    result = run(missing)
    assert result['config_dir_exists'] is False and result['accounts'] == [] and result['config'] == []
    assert not missing.exists()


def test_reading_changes_nothing_not_even_the_lock_file(config):
    before = snapshot(config)
    run(config, compare_to=dict(accounts=[dict(address='alice@example.com', password='x')]), verify_passwords=True)
    assert snapshot(config) == before
    assert not (config / '.dms-mailserver.lock').exists()


def test_bad_gather_and_compare_to_name_the_field(config):
    with pytest.raises(ValidationError, match='^gather: .nope.'):
        run(config, gather=['nope'])
    with pytest.raises(ValidationError, match=r'^compare_to\.accounts\[1\]\.address'):
        run(config, compare_to=dict(accounts=[dict(address='a@x.test'), dict(address='bad')]))
    with pytest.raises(ValidationError, match=r'^compare_to\.dkim\[0\]\.selector'):
        run(config, compare_to=dict(dkim=[dict(domain='x.test', selector='bad selector')]))
    with pytest.raises(ValidationError, match='^compare_to.aliases: must be a list'):
        run(config, compare_to=dict(aliases='x'))


# -- drift --------------------------------------------------------------------------------------------------


def drift(base, section, items, **options):
    result = run(base, gather=[], compare_to={section: items}, **options)
    return result['drift'][section], result['in_sync']


ACCOUNTS = [dict(address='alice@example.com', quota='10M'), dict(address='bob@example.com', restrict=['send']),
            dict(address='jimbob@example.com')]


def test_accounts_drift_each_kind(config):
    assert drift(config, 'accounts', ACCOUNTS) == (dict(missing=[], extra=[], different=[]), True)
    d, in_sync = drift(config, 'accounts', ACCOUNTS[:2] + [dict(address='new@example.com', password='pw')])
    assert not in_sync and d['missing'] == ['new@example.com'] and d['extra'] == ['jimbob@example.com']
    d, dummy = drift(config, 'accounts', [dict(address='alice@example.com', quota='20M', scheme='ARGON2ID'),
                                          dict(address='bob@example.com', restrict=[]),
                                          dict(address='jimbob@example.com', state='absent')])
    assert d['different'] == [dict(address='alice@example.com', fields=['scheme', 'quota']),
                              dict(address='bob@example.com', fields=['restrict'])]
    assert d['extra'] == ['jimbob@example.com']


def test_accounts_password_is_checked_only_on_request(tmp_path):
    from ansible_collections.dms.mailserver.plugins.module_utils._hashing import run_jobs
    stored = run_jobs([('hash', 'Right-Pw-1', 'SHA512-CRYPT')])[0]
    write(tmp_path, {'postfix-accounts.cf': 'a@x.test|%s\n' % stored})
    wrong = [dict(address='a@x.test', password='Wrong-Pw-2')]
    assert drift(tmp_path, 'accounts', wrong)[1] is True
    d, dummy = drift(tmp_path, 'accounts', wrong, verify_passwords=True)
    assert d['different'] == [dict(address='a@x.test', fields=['password'])]
    assert drift(tmp_path, 'accounts', [dict(address='a@x.test', password='Right-Pw-1')], verify_passwords=True)[1]
    assert drift(tmp_path, 'accounts', [dict(address='a@x.test', password_hash=stored)])[1]


def test_no_hashing_without_verify_passwords(config, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError('hashed without verify_passwords')
    monkeypatch.setattr(_info, 'run_jobs', boom)
    drift(config, 'accounts', [dict(address='alice@example.com', password='pw')])


ALIASES = [dict(alias='info@example.com', recipients=['alice@example.com', 'bob@example.com']),
           dict(alias='@example.com', recipients=['admin@example.org']),
           dict(alias='/^sales-.*@example\\.com$/', type='regexp', recipients=['alice@example.com']),
           dict(alias='/^ops@/', type='regexp', recipients=['bob@example.com'])]


def test_aliases_drift_each_kind(config):
    # The self-alias and the local-only alias "root" are not extra.
    assert drift(config, 'aliases', ALIASES)[1] is True
    d, dummy = drift(config, 'aliases', ALIASES[1:] + [dict(alias='new@example.com', recipients=['a@b.test'])])
    assert d['missing'] == [dict(type='virtual', alias='new@example.com')]
    assert d['extra'] == [dict(type='virtual', alias='info@example.com')]
    changed = [dict(ALIASES[0], recipients=['bob@example.com', 'alice@example.com'])] + [ALIASES[1]] + \
        [ALIASES[3], ALIASES[2]]
    d, dummy = drift(config, 'aliases', changed)
    assert d['different'] == [dict(type='virtual', alias='info@example.com', fields=['recipients']),
                              dict(type='regexp', alias='/^sales-.*@example\\.com$/', fields=['order'])]


RELAYS = [dict(domain='example.com', host='smtp.mailgun.org', port=587, username='postmaster@mg', password=RELAY_PW),
          dict(domain='internal.example.net', exclude=True), dict(domain='plain.example'),
          dict(host='ses.example', port=587, username='user', password=RELAY_PW)]


def test_relays_drift_each_kind(config):
    d, in_sync = drift(config, 'relays', RELAYS, verify_passwords=True)
    assert in_sync, d
    d, dummy = drift(config, 'relays', RELAYS[1:] + [dict(domain='new.example', host='relay.test')])
    assert d['missing'] == ['@new.example'] and d['extra'] == ['@example.com']
    other = [dict(RELAYS[0], port=25, password='Other-Pw-9')] + RELAYS[1:]
    assert drift(config, 'relays', other)[0]['different'] == [dict(key='@example.com', fields=['host'])]
    d = drift(config, 'relays', other, verify_passwords=True)[0]
    assert d['different'] == [dict(key='@example.com', fields=['host', 'password'])]
    assert RELAY_PW not in repr(d) and 'Other-Pw-9' not in repr(d)


def test_dkim_drift_each_kind(tmp_path):
    dkim_plan(tmp_path, 'opendkim', 'example.com', rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert drift(tmp_path, 'dkim', [dict(domain='example.com', key_size=1024)])[1] is True
    d = drift(tmp_path, 'dkim', [dict(domain='example.com', key_size=2048)])[0]
    assert d['different'] == [dict(domain='example.com', selector='mail', backend='opendkim', fields=['key_size'])]
    d = drift(tmp_path, 'dkim', [dict(domains=['example.org'], backend='rspamd')])[0]
    assert d['missing'] == [dict(domain='example.org', selector='mail', backend='rspamd')]
    assert d['extra'] == [dict(domain='example.com', selector='mail', backend='opendkim')]


def test_config_drift_each_kind(config):
    items = [dict(file='postfix-main.cf', settings=dict(message_size_limit=1000, smtpd_banner='x y')),
             dict(file='user-patches.sh', content='#!/bin/bash\n')]
    assert drift(config, 'config', items)[1] is True
    d = drift(config, 'config', [dict(file='postfix-main.cf', exclusive=True,
                                      settings=dict(message_size_limit=2000, mydomain='x.test'))])[0]
    assert d == dict(missing=[dict(file='postfix-main.cf', key='mydomain')],
                     extra=[dict(file='postfix-main.cf', key='smtpd_banner')],
                     different=[dict(file='postfix-main.cf', key='message_size_limit', fields=['value'])])
    d = drift(config, 'config', [dict(file='amavis.cf', content='x\n'), dict(file='user-patches.sh', state='absent'),
                                 dict(file='dovecot.cf', release_line='16', sections={'protocol imap': {'a': 'b'}})])[0]
    assert d['missing'] == [dict(file='amavis.cf')] and d['extra'] == [dict(file='user-patches.sh')]
    assert d['different'] == [dict(file='dovecot.cf', section='protocol imap', fields=['value'])]


# -- live data -----------------------------------------------------------------------------------------------

QUOTA_15 = ('Username\tQuota name\tType\tValue\tLimit\t%\na@x.test\tUser quota\tSTORAGE\t12\t10240\t0\n'
            'a@x.test\tUser quota\tMESSAGE\t3\t-\t0\nb@x.test\tUser quota\tSTORAGE\t0\t-\t0\n'
            'b@x.test\tUser quota\tMESSAGE\t0\t-\t0\n')


def test_parse_quota_and_mailbox_status():
    assert _info.parse_quota(QUOTA_15) == {
        'a@x.test': dict(used_kib=12, limit_kib=10240, percent=0, messages=3, message_limit=None),
        'b@x.test': dict(used_kib=0, limit_kib=None, percent=0, messages=0, message_limit=None)}
    assert _info.parse_mailbox_status('Username\tmessages\tvsize\na@x.test\t2\t2049\n') == {
        'a@x.test': dict(used_kib=3, limit_kib=None, percent=None, messages=2, message_limit=None)}


def _sums(base, names):
    return ''.join('%s  /tmp/docker-mailserver/%s\n' % (hashlib.sha512((base / n).read_bytes()).hexdigest(), n)
                   for n in names)


def test_change_detector_state(config):
    names = ['postfix-accounts.cf', 'postfix-virtual.cf', 'postfix-regexp.cf', 'postfix-relaymap.cf',
             'postfix-sasl-password.cf', 'dovecot-quotas.cf']
    applied = _sums(config, names) + 'abc  /etc/letsencrypt/acme.json\n'
    with ConfigDir(str(config), check_mode=True) as cfg:
        assert _info.change_detector_state(cfg, applied, False) == dict(applied=True, pending=[])
        (config / 'postfix-virtual.cf').write_text('new@example.com a@b.test\n')
        (config / 'dovecot-masters.cf').write_text('admin|%s\n' % HASH)
        assert _info.change_detector_state(cfg, applied, False) == dict(
            applied=False, pending=['dovecot-masters.cf', 'postfix-virtual.cf'])
        os.makedirs(str(config / 'rspamd'))
        (config / 'rspamd' / 'x.conf').write_text('x\n')
        assert 'rspamd/x.conf' in _info.change_detector_state(cfg, applied, True)['pending']
        assert 'rspamd/x.conf' not in _info.change_detector_state(cfg, applied, False)['pending']


def test_live_uses_argv_lists_and_falls_back_without_quotas(config):
    calls = []

    def fake(argv):
        calls.append(argv)
        if argv[:2] == ['printenv', 'DMS_RELEASE']:
            return 0, 'v16.0.1\n', ''
        if argv[0] == 'printenv':
            return 1, '', ''
        if argv[0] == 'cat':
            return 0, '', ''
        if argv[:5] == ['doveadm', '-f', 'tab', 'quota', 'get']:
            return 68, '', 'Error: quota plugin not loaded'
        return 0, 'Username\tmessages\tvsize\nalice@example.com\t1\t1024\n', ''
    with ConfigDir(str(config), check_mode=True) as cfg:
        live, usage = _info.live(cfg, fake, True)
    assert live['dms_release'] == 'v16.0.1' and live['quota_source'] == 'doveadm mailbox status'
    assert live['change_detector']['applied'] is False
    assert usage['alice@example.com']['messages'] == 1
    assert all(isinstance(argv, list) and all(isinstance(a, str) for a in argv) for argv in calls)


def test_quota_applied_follows_dms_substring_lookup(tmp_path):
    write(tmp_path, {'postfix-accounts.cf': ''.join('%s|%s\n' % (a, HASH) for a in (
        'bob@x.test', 'ann@x.test', 'nn@x.test', 'cy@x.test', 'y@y.test')),
        'dovecot-quotas.cf': 'bob@x.test:1M\njimbob@x.test:2M\nxann@x.test:3M\nann@x.test:4M\nmcy@x.test:5M\n'
                             'ey@x.test:6M\n'})
    accounts = dict((a['address'], a) for a in run(tmp_path, gather=['accounts'])['accounts'])
    assert 'quota_applied' not in accounts['bob@x.test']            # its own line comes first
    assert accounts['ann@x.test']['quota_applied'] == '3M'          # xann's line stands before ann's
    assert accounts['nn@x.test'] == dict(address='nn@x.test', scheme='SHA512-CRYPT', quota_applied='3M')  # no line of its own
    assert accounts['cy@x.test']['quota_applied'] == '5M'
    assert 'quota_applied' not in accounts['y@y.test']              # ey@x.test is another domain
