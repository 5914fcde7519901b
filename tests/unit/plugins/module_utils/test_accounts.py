# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _accounts
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import hash_password, verify_password
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError


def params(**kw):
    base = dict(address=None, password=None, password_hash=None, scheme=None, quota=None, restrict=None,
                state='present', accounts=None, exclusive=False, update_password='always',
                allow_alias_overlap=False)
    base.update(kw)
    return base


def apply(tmp_path, **kw):
    p = params(**kw)
    entries, warnings = _accounts.normalize(p)
    with ConfigDir(str(tmp_path)) as cfg:
        result = _accounts.plan(cfg, p, entries)
        changed, dummy = cfg.commit()
    result['changed_files'] = changed
    result['warnings'] = warnings + result.pop('_warnings')
    return result


def read(tmp_path, name):
    path = tmp_path / name
    return path.read_text() if path.exists() else None


def test_create_then_idempotent(tmp_path):
    r = apply(tmp_path, address='a@x.com', password='pw', quota='1G', restrict=['send'])
    assert r['created'] == ['a@x.com'] and r['restart_required']
    line = read(tmp_path, 'postfix-accounts.cf').strip()
    assert line.startswith('a@x.com|{SHA512-CRYPT}$6$') and verify_password('pw', line.split('|')[1])
    assert read(tmp_path, 'dovecot-quotas.cf') == 'a@x.com:1G\n'
    assert read(tmp_path, 'postfix-send-access.cf') == 'a@x.com \t\t REJECT\n'
    again = apply(tmp_path, address='a@x.com', password='pw', quota='1G', restrict=['send'])
    assert again['changed_files'] == [] and again['created'] == again['updated'] == []
    assert not again['restart_required']


def test_password_change_keeps_extra_fields(tmp_path):
    stored = hash_password('old')
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s|userdb_mail=mbox:~/mail\n' % stored)
    r = apply(tmp_path, address='a@x.com', password='new')
    assert r['updated'] == ['a@x.com']
    login, hashed, extra = read(tmp_path, 'postfix-accounts.cf').strip().split('|')
    assert verify_password('new', hashed) and extra == 'userdb_mail=mbox:~/mail'


def test_on_create_never_touches_existing_hash(tmp_path):
    stored = hash_password('old')
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\n' % stored)
    r = apply(tmp_path, address='a@x.com', password='new', update_password='on_create')
    assert r['changed_files'] == []


def test_explicit_scheme_rehashes_other_scheme(tmp_path):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\n' % hash_password('pw'))
    assert apply(tmp_path, address='a@x.com', password='pw')['changed_files'] == []
    r = apply(tmp_path, address='a@x.com', password='pw', scheme='BLF-CRYPT')
    assert r['updated'] == ['a@x.com']
    assert '{BLF-CRYPT}$2y$' in read(tmp_path, 'postfix-accounts.cf')


def test_absent_removes_quota_restrictions_and_alias_references(tmp_path):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\nb@x.com|%s\n' % (hash_password('1'), hash_password('2')))
    (tmp_path / 'dovecot-quotas.cf').write_text('a@x.com:1G\nb@x.com:2G\n')
    (tmp_path / 'postfix-receive-access.cf').write_text('a@x.com \t\t REJECT\n')
    (tmp_path / 'postfix-virtual.cf').write_text(
        '# c a@x.com\nl1@x.com a@x.com\nl2@x.com b@x.com,a@x.com\nl3@x.com a@x.com,b@x.com,c@y.com\n')
    r = apply(tmp_path, address='a@x.com', state='absent')
    assert r['removed'] == ['a@x.com']
    assert 'a@x.com' not in read(tmp_path, 'postfix-accounts.cf')
    assert read(tmp_path, 'dovecot-quotas.cf') == 'b@x.com:2G\n'
    assert read(tmp_path, 'postfix-receive-access.cf') == ''
    assert read(tmp_path, 'postfix-virtual.cf') == '# c a@x.com\nl2@x.com b@x.com\nl3@x.com b@x.com,c@y.com\n'
    assert apply(tmp_path, address='a@x.com', state='absent')['changed_files'] == []


def test_alias_overlap_is_exact_and_case_insensitive(tmp_path):
    (tmp_path / 'postfix-virtual.cf').write_text('Info@x.com a@y.com\n')
    with pytest.raises(ValidationError) as err:
        apply(tmp_path, address='info@x.com', password='pw')
    assert 'allow_alias_overlap' in str(err.value)
    # DMS's prefix match would refuse this one; an exact match does not.
    assert apply(tmp_path, address='info@x.co', password='pw')['created'] == ['info@x.co']
    assert apply(tmp_path, address='info@x.com', password='pw', allow_alias_overlap=True)['created']


def test_catchall_gets_self_aliases_for_new_accounts(tmp_path):
    (tmp_path / 'postfix-virtual.cf').write_text('@x.com catch@y.com\n')
    apply(tmp_path, accounts=[{'address': 'a@x.com', 'password': 'p'}, {'address': 'b@z.com', 'password': 'p'}])
    assert read(tmp_path, 'postfix-virtual.cf') == 'a@x.com a@x.com\n@x.com catch@y.com\n'
    apply(tmp_path, address='a@x.com', state='absent')
    assert read(tmp_path, 'postfix-virtual.cf') == '@x.com catch@y.com\n'


def test_quota_line_ordering_beats_dms_substring_lookup(tmp_path):
    (tmp_path / 'dovecot-quotas.cf').write_text('xa@x.com:5G\n')
    r = apply(tmp_path, address='a@x.com', password='p', quota='1G')
    assert read(tmp_path, 'dovecot-quotas.cf') == 'a@x.com:1G\nxa@x.com:5G\n'
    assert r['warnings'] == []


def test_exclusive(tmp_path):
    apply(tmp_path, accounts=[{'address': 'u%d@x.com' % i, 'password': 'p', 'quota': '1M'} for i in range(6)])
    r = apply(tmp_path, accounts=[{'address': 'u%d@x.com' % i, 'password': 'p'} for i in range(3)], exclusive=True)
    assert sorted(r['removed']) == ['u3@x.com', 'u4@x.com', 'u5@x.com']
    assert read(tmp_path, 'dovecot-quotas.cf') == 'u0@x.com:1M\nu1@x.com:1M\nu2@x.com:1M\n'


@pytest.mark.parametrize('kw,needle', [
    (dict(accounts=[], exclusive=True), 'would remove every account'),
    (dict(address='a@x.com', exclusive=True), 'exclusive'),
    (dict(accounts=[{'address': 'a@x.com'}, {'address': 'A@x.com'}]), 'listed twice'),
    (dict(address='a@x.com', password='p', password_hash='{SHA512-CRYPT}x'), 'not both'),
    (dict(address='a@x.com', password='p\n'), 'line break'),
    (dict(address='a@x.com', password=''), 'non-empty'),
    (dict(address='a@x.com', password_hash='{SHA512-CRYPT}nope'), 'well-formed'),
    (dict(address='a@x.com', password='p', restrict=['sned']), 'restrict[0]'),
    (dict(address='a@x.com', password='p', quota='5'), 'quota'),
    (dict(address='a@x.com', state='absent', quota='5M'), 'state=absent'),
])
def test_normalize_rejects(kw, needle):
    with pytest.raises(ValidationError) as err:
        _accounts.normalize(params(**kw))
    assert needle in str(err.value)


def test_new_account_without_password_is_an_error(tmp_path):
    with pytest.raises(ValidationError) as err:
        apply(tmp_path, address='a@x.com', quota='1G')
    assert 'does not exist yet' in str(err.value)
    assert not (tmp_path / 'postfix-accounts.cf').exists()


def test_quota_suffix_collisions_within_one_run(tmp_path):
    apply(tmp_path, accounts=[{'address': 'xa@x.com', 'password': 'p', 'quota': '5G'},
                              {'address': 'a@x.com', 'password': 'p', 'quota': '1G'},
                              {'address': 'b@x.com', 'password': 'p', 'quota': '2G'}])
    assert read(tmp_path, 'dovecot-quotas.cf') == 'a@x.com:1G\nxa@x.com:5G\nb@x.com:2G\n'


def test_quota_warning_when_dms_would_pick_another_line(tmp_path):
    (tmp_path / 'dovecot-quotas.cf').write_text('xa@x.com:5G\na@x.com:1G\n')
    r = apply(tmp_path, address='a@x.com', password='p', quota='1G')
    assert r['changed_files'] == ['postfix-accounts.cf']
    assert len(r['warnings']) == 1 and "'xa@x.com'" in r['warnings'][0]


DOVEADM_BLF = '{BLF-CRYPT}$2y$05$t.IgS0QMPrSea/7kOoR8PekoVZZEWf2Vv1tBFqnr6/mg1.WAB8pIS'   # 'dms-selftest'


@pytest.mark.parametrize('scheme', [None, 'BLF-CRYPT'])
def test_correct_doveadm_blf_crypt_hash_survives(tmp_path, scheme):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\n' % DOVEADM_BLF)
    r = apply(tmp_path, address='a@x.com', password='dms-selftest', scheme=scheme)
    assert r['changed_files'] == [] and r['updated'] == []
    assert read(tmp_path, 'postfix-accounts.cf') == 'a@x.com|%s\n' % DOVEADM_BLF


def test_password_change_keeps_the_stored_scheme(tmp_path):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\n' % DOVEADM_BLF)
    r = apply(tmp_path, address='a@x.com', password='a new one')
    assert r['updated'] == ['a@x.com']
    stored = read(tmp_path, 'postfix-accounts.cf').strip().split('|')[1]
    assert stored.startswith('{BLF-CRYPT}$2y$10$') and verify_password('a new one', stored)


def test_broken_backend_fails_loudly_with_nothing_written(tmp_path, monkeypatch):
    from ansible_collections.dms.mailserver.plugins.module_utils import _hashing

    class Broken:
        @staticmethod
        def checkpw(password, hashed):
            raise ValueError('password cannot be longer than 72 bytes, truncate manually if necessary')
        hashpw = checkpw
    before = 'a@x.com|%s\n' % DOVEADM_BLF
    (tmp_path / 'postfix-accounts.cf').write_text(before)
    for checked in (set(), {'bcrypt'}):      # caught by the self-test, or by the verification itself
        monkeypatch.setattr(_hashing, '_checked', set(checked))
        monkeypatch.setattr(_hashing, '_bcrypt', Broken)
        with pytest.raises(ValidationError) as err:
            apply(tmp_path, address='a@x.com', password='dms-selftest')
        assert 'bcrypt failed' in str(err.value) and 'nothing was written' in str(err.value)
        assert read(tmp_path, 'postfix-accounts.cf') == before


@pytest.mark.parametrize('kw,stored', [
    (dict(address='a@x.com', password='x' * 73, scheme='BLF-CRYPT'), None),
    (dict(accounts=[dict(address='a@x.com', password='x' * 73, scheme='BLF-CRYPT')]), None),
    (dict(address='a@x.com', password='x' * 73), DOVEADM_BLF),
])
def test_blf_crypt_refuses_73_bytes_naming_the_field(tmp_path, kw, stored):
    if stored:
        (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\n' % stored)
    with pytest.raises(ValidationError) as err:
        apply(tmp_path, **kw)
    msg = str(err.value)
    assert msg.startswith('accounts[0].password: ' if 'accounts' in kw else 'password: ')
    assert '73 bytes' in msg and 'x' * 73 not in msg
    assert read(tmp_path, 'postfix-accounts.cf') == ('a@x.com|%s\n' % stored if stored else None)


@pytest.mark.parametrize('scheme', ['SHA512-CRYPT', 'ARGON2ID'])
def test_long_password_with_other_schemes(tmp_path, scheme):
    r = apply(tmp_path, address='a@x.com', password='x' * 73, scheme=scheme)
    assert r['created'] == ['a@x.com']
    assert apply(tmp_path, address='a@x.com', password='x' * 73, scheme=scheme)['changed_files'] == []


def test_long_password_may_replace_a_blf_crypt_hash_when_scheme_says_so(tmp_path):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|%s\n' % DOVEADM_BLF)
    r = apply(tmp_path, address='a@x.com', password='x' * 73, scheme='SHA512-CRYPT')
    assert r['updated'] == ['a@x.com']


def test_unverifiable_stored_hash_is_replaced_with_a_warning(tmp_path):
    (tmp_path / 'postfix-accounts.cf').write_text('a@x.com|{PLAIN}old\n')
    r = apply(tmp_path, address='a@x.com', password='new-pw')
    assert r['updated'] == ['a@x.com']
    assert any('{PLAIN}' in w and 'cannot verify' not in w and 'not a hash this collection can verify' in w
               for w in r['warnings'])
    assert read(tmp_path, 'postfix-accounts.cf').startswith('a@x.com|{SHA512-CRYPT}$6$')
