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


# -- masters, sieve, fetches ---------------------------------------------------------------------------------

MASTER_PW = 'Unit-Info-Master-Pw-7c3'
FETCH_PW = 'Unit-Info-Fetch-Pw-2b8'


def converge(base, module, params, **extra):
    """Write the config dir with the state module's own planner (what the module would do)."""
    from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmail, _masters, _sieve
    mod = dict(masters=_masters, sieve=_sieve, fetchmail=_fetchmail)[module]
    entries, dummy = mod.normalize(params)
    with ConfigDir(str(base), check_mode=False) as cfg:
        mod.plan(cfg, params, entries, **extra)
        cfg.commit()


def master_params(masters):
    return dict(name=None, password=None, password_hash=None, scheme=None, state='present',
                update_password='always', exclusive=False,
                masters=[dict(dict(password=None, password_hash=None, scheme=None, state=None), **m) for m in masters])


def test_masters_names_and_scheme_never_a_hash(tmp_path):
    from ansible_collections.dms.mailserver.plugins.module_utils._hashing import run_jobs
    stored = run_jobs([('hash', MASTER_PW, 'SHA512-CRYPT')])[0]
    write(tmp_path, {'dovecot-masters.cf': '# masters\nAdmin|%s\nops|%s\nadmin|%s\n' % (stored, ARGON, HASH)})
    result = run(tmp_path, gather=['masters'])
    assert result['masters'] == [dict(name='Admin', scheme='SHA512-CRYPT'), dict(name='ops', scheme='ARGON2ID')]
    assert stored not in repr(result) and '$6$' not in repr(result) and 'argon2id$' not in repr(result)
    assert run(tmp_path / 'nope', gather=['masters'])['masters'] == []


def test_masters_drift_each_kind(tmp_path):
    listed = [dict(name='admin', password=MASTER_PW), dict(name='ops', password=MASTER_PW, scheme='ARGON2ID')]
    converge(tmp_path, 'masters', master_params([dict(listed[0], scheme='SHA512-CRYPT'), listed[1]]))
    assert drift(tmp_path, 'masters', listed) == (dict(missing=[], extra=[], different=[]), True)
    assert drift(tmp_path, 'masters', listed, verify_passwords=True)[1] is True
    d, in_sync = drift(tmp_path, 'masters', [dict(name='admin', scheme='ARGON2ID'), dict(name='new')])
    assert not in_sync and d == dict(missing=['new'], extra=['ops'],
                                     different=[dict(name='admin', fields=['scheme'])])
    d, dummy = drift(tmp_path, 'masters', [dict(name='admin', state='absent'), listed[1]])
    assert d['extra'] == ['admin'] and not d['missing'] and not d['different']
    # A wrong password is found only with verify_passwords, through the shared hashing engine.
    wrong = [dict(name='admin', password='Wrong-Pw-5'), listed[1]]
    assert drift(tmp_path, 'masters', wrong)[1] is True
    d, dummy = drift(tmp_path, 'masters', wrong, verify_passwords=True)
    assert d['different'] == [dict(name='admin', fields=['password'])]
    with pytest.raises(ValidationError, match=r'^compare_to\.masters\[0\]\.name'):
        drift(tmp_path, 'masters', [dict(name='a|b')])


def test_masters_drift_hashes_nothing_without_verify_passwords(tmp_path, monkeypatch):
    write(tmp_path, {'dovecot-masters.cf': 'admin|%s\n' % HASH})

    def boom(*args, **kwargs):
        raise AssertionError('hashed without verify_passwords')
    monkeypatch.setattr(_info, 'run_jobs', boom)
    assert drift(tmp_path, 'masters', [dict(name='admin', password='pw-long-enough')])[1] is True


SIEVE_ALICE = 'require ["fileinto"];\nif header :contains "subject" "x" { fileinto "Junk"; }\n'


def sieve_params(scripts):
    keys = ('address', 'scope', 'script', 'vacation', 'forward', 'state')
    return dict(address=None, scope=None, script=None, vacation=None, forward=None, state='present',
                exclusive=False, validate='never', scripts=[dict(dict((k, None) for k in keys), **s) for s in scripts])


@pytest.fixture
def sieve_dir(tmp_path):
    write(tmp_path, {'postfix-accounts.cf': 'alice@example.com|%s\nbob@example.com|%s\n' % (HASH, HASH)})
    converge(tmp_path, 'sieve', sieve_params([
        dict(address='alice@example.com', script=SIEVE_ALICE),
        dict(address='bob@example.com', forward=dict(addresses=['x@example.org'], keep=True)),
        dict(scope='before', script='keep;\n')]))
    converge(tmp_path, 'sieve', sieve_params([dict(address='bob@example.com', state='absent')]))
    return tmp_path


def test_sieve_scripts_by_name_never_their_text(sieve_dir):
    result = run(sieve_dir, gather=['sieve'])
    assert result['sieve'] == [dict(kind='user', address='alice@example.com', neutral=False),
                               dict(kind='user', address='bob@example.com', neutral=True),
                               dict(kind='global', scope='before')]
    assert 'fileinto' not in repr(result) and 'keep;' not in repr(result)
    write(sieve_dir, {'after.dovecot.sieve': 'keep;\n', 'other.sieve': 'keep;\n'})
    assert [i.get('scope') for i in run(sieve_dir, gather=['sieve'])['sieve']] == [None, None, 'before', 'after']


def test_sieve_drift_each_kind(sieve_dir):
    listed = [dict(address='alice@example.com', script=SIEVE_ALICE), dict(address='bob@example.com', state='absent'),
              dict(scope='before', script='keep;\n')]
    assert drift(sieve_dir, 'sieve', listed) == (dict(missing=[], extra=[], different=[]), True)
    # bob's neutral script is no filter: not extra when unlisted.
    assert drift(sieve_dir, 'sieve', [listed[0], listed[2]])[1] is True
    d, in_sync = drift(sieve_dir, 'sieve', [dict(address='alice@example.com', script='discard;\n'),
                                            dict(address='bob@example.com', script='keep;\n'),
                                            dict(scope='after', script='keep;\n')])
    assert not in_sync
    assert d == dict(missing=[dict(address='bob@example.com'), dict(scope='after')], extra=[dict(scope='before')],
                     different=[dict(address='alice@example.com', fields=['script'])])
    d, dummy = drift(sieve_dir, 'sieve', [dict(address='alice@example.com', state='absent'), listed[2]])
    assert d['extra'] == [dict(address='alice@example.com')]
    with pytest.raises(ValidationError, match=r'^compare_to\.sieve\[0\]\.scope'):
        drift(sieve_dir, 'sieve', [dict(scope='middle', script='keep;')])


def fetch_params(fetches):
    keys = ('server', 'protocol', 'port', 'username', 'password', 'ssl', 'cleartext', 'keep', 'folders', 'target',
            'fetcher', 'state')
    return dict(dict((k, None) for k in keys), fetcher='fetchmail', state='present', exclusive=False,
                fetches=[dict(dict((k, None) for k in keys), **f) for f in fetches])


FETCHES = [dict(server='pop.example.net', protocol='pop3', port=995, username='alice.remote', password=FETCH_PW,
                target='alice@example.com', keep=False),
           dict(server='imap.example.net', username='bob', password=FETCH_PW, target='bob@example.com',
                folders=['INBOX', 'Sent']),
           dict(server='imap.example.org', username='bob@example.org', password=FETCH_PW, target='bob@example.com',
                fetcher='getmail')]


@pytest.fixture
def fetch_dir(tmp_path):
    write(tmp_path, {'postfix-accounts.cf': 'alice@example.com|%s\nbob@example.com|%s\n' % (HASH, HASH)})
    converge(tmp_path, 'fetchmail', fetch_params(FETCHES))
    return tmp_path


def test_fetches_of_both_fetchers_never_a_password(fetch_dir):
    result = run(fetch_dir, gather=['fetches'])
    assert result['fetches'] == [
        dict(fetcher='fetchmail', file='fetchmail.cf', server='pop.example.net', username='alice.remote',
             protocol='pop3', port=995, target='alice@example.com', ssl=True, keep=False, folders=[],
             password_set=True),
        dict(fetcher='fetchmail', file='fetchmail.cf', server='imap.example.net', username='bob', protocol='imap',
             port=None, target='bob@example.com', ssl=True, keep=True, folders=['INBOX', 'Sent'], password_set=True),
        dict(fetcher='getmail', file='getmail/bob@example.org@imap.example.org.cf', server='imap.example.org',
             username='bob@example.org', protocol='imap', port=None, target='bob@example.com', ssl=True, keep=True,
             folders=['INBOX'], password_set=True)]
    assert FETCH_PW not in repr(result)


def test_fetchmail_defaults_statement_and_fetchmail_defaults(tmp_path):
    write(tmp_path, {'fetchmail.cf': "# mine\ndefaults proto imap keep ssl\n"
                                     "poll a.example.net user 'u1' is 'alice@example.com' here\n"
                                     "poll b.example.net service 1110 user u2 with pass \"%s\" to x@example.com "
                                     "there nokeep\n" % FETCH_PW,
                     'getmail/broken.cf': '[retriever]\nserver = x\nserver = y\n',
                     'getmail/none.cf': '[destination]\ntype = MDA_external\n',
                     'getmail/ok.cf': '[retriever]\ntype = SimplePOP3Retriever\nserver = c.example.net\n'
                                      'port = 1110\nusername = u3\n',
                     'getmail/getmailrc_general.cf': '[options]\ndelete = true\n'})
    fetches = run(tmp_path, gather=['fetches'])['fetches']
    assert [(f.get('server'), f.get('protocol'), f.get('port'), f.get('ssl'), f.get('keep'), f.get('target'),
             f.get('password_set')) for f in fetches[:2]] == [
        ('a.example.net', 'imap', None, True, True, 'alice@example.com', False),
        ('b.example.net', 'imap', 1110, True, False, 'x@example.com', True)]
    assert [(f['file'], 'error' in f) for f in fetches[2:]] == [
        ('getmail/broken.cf', True), ('getmail/none.cf', True), ('getmail/ok.cf', False)]
    # getmail keeps mail unless the base options (getmailrc_general.cf here) delete it; no password, no target.
    assert dict((k, fetches[4][k]) for k in ('protocol', 'ssl', 'port', 'keep', 'password_set', 'target')) == dict(
        protocol='pop3', ssl=False, port=1110, keep=False, password_set=False, target=None)
    assert FETCH_PW not in repr(fetches)
    # Without a defaults statement, fetchmail's own: no TLS wrapper, nokeep, protocol auto-probed.
    write(tmp_path, {'fetchmail.cf': 'poll c.example.net user u3 pass p is alice@example.com\n'})
    first = run(tmp_path, gather=['fetches'])['fetches'][0]
    assert (first['protocol'], first['ssl'], first['keep']) == (None, False, False)


def test_unreadable_fetchmail_cf_is_reported_not_fatal(tmp_path):
    write(tmp_path, {'fetchmail.cf': "poll x user u pass '%s\n" % FETCH_PW})
    fetches = run(tmp_path, gather=['fetches'])['fetches']
    assert fetches[0]['file'] == 'fetchmail.cf' and 'never closed' in fetches[0]['error']
    assert FETCH_PW not in repr(fetches)


def test_fetches_drift_each_kind(fetch_dir):
    assert drift(fetch_dir, 'fetches', FETCHES) == (dict(missing=[], extra=[], different=[]), True)
    assert drift(fetch_dir, 'fetches', FETCHES, verify_passwords=True)[1] is True
    changed = [dict(FETCHES[0], port=110, ssl=False, cleartext=True), dict(FETCHES[1], fetcher='getmail'),
               dict(server='new.example.net', username='n', password='p', target='alice@example.com')]
    d, in_sync = drift(fetch_dir, 'fetches', changed)
    assert not in_sync
    assert d == dict(missing=[dict(server='new.example.net', username='n')],
                     extra=[dict(server='imap.example.org', username='bob@example.org')],
                     different=[dict(server='pop.example.net', username='alice.remote', fields=['port', 'ssl']),
                                dict(server='imap.example.net', username='bob', fields=['fetcher'])])
    gone = dict(server='IMAP.example.org', username='bob@example.org', state='absent')
    d, dummy = drift(fetch_dir, 'fetches', FETCHES[:2] + [gone])
    assert d['extra'] == [dict(server='imap.example.org', username='bob@example.org')]
    # Passwords are compared (never hashed) only with verify_passwords.
    wrong = [dict(f, password='Wrong-Pw-3') for f in FETCHES]
    assert drift(fetch_dir, 'fetches', wrong)[1] is True
    d, dummy = drift(fetch_dir, 'fetches', wrong, verify_passwords=True)
    assert [x['fields'] for x in d['different']] == [['password']] * 3
    with pytest.raises(ValidationError, match=r'^compare_to\.fetches\[0\]\.protocol'):
        drift(fetch_dir, 'fetches', [dict(FETCHES[0], protocol='smtp')])


def test_new_sections_in_the_default_gather_and_no_secret_anywhere(fetch_dir):
    from ansible_collections.dms.mailserver.plugins.module_utils._hashing import run_jobs
    stored = run_jobs([('hash', MASTER_PW, 'SHA512-CRYPT')])[0]
    write(fetch_dir, {'dovecot-masters.cf': 'admin|%s\n' % stored})
    converge(fetch_dir, 'sieve', sieve_params([dict(address='alice@example.com', script=SIEVE_ALICE)]))
    result = run(fetch_dir, compare_to=dict(masters=[dict(name='admin', password='Wrong-Pw-4')],
                                            fetches=[dict(f, password='Wrong-Pw-4') for f in FETCHES]),
                 verify_passwords=True)
    assert result['sections'][-4:] == ['masters', 'sieve', 'fetches', 'config']
    assert result['masters'] and result['sieve'] and len(result['fetches']) == 3
    text = repr(result)
    for secret in (stored, '$6$', FETCH_PW, 'Wrong-Pw-4', HASH, 'fileinto'):
        assert secret not in text
