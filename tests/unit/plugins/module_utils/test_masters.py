# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _accounts, _masters, _passwords
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import hash_password, verify_password
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError


def params(**kw):
    base = dict(name=None, password=None, password_hash=None, scheme=None, state='present', masters=None,
                exclusive=False, update_password='always')
    base.update(kw)
    return base


def apply(tmp_path, check_mode=False, **kw):
    p = params(**kw)
    entries, warnings = _masters.normalize(p)
    with ConfigDir(str(tmp_path), check_mode=check_mode) as cfg:
        result = _masters.plan(cfg, p, entries)
        changed, dummy = cfg.commit()
    result['changed_files'] = changed
    result['warnings'] = warnings + result.pop('_warnings')
    return result


def read(tmp_path, name='dovecot-masters.cf'):
    path = tmp_path / name
    return path.read_text() if path.exists() else None


def masters_in(tmp_path):
    return dict(line.split('|', 1) for line in read(tmp_path).splitlines() if line and not line.startswith('#'))


def test_create_in_dms_format_then_idempotent(tmp_path):
    r = apply(tmp_path, name='admin', password='master-pw')
    assert r['created'] == ['admin'] and r['changed_files'] == ['dovecot-masters.cf']
    assert r['restart_required'] is False and r['login_separator'] == '*'
    line = read(tmp_path)
    assert line.startswith('admin|{SHA512-CRYPT}$6$') and line.endswith('\n') and line.count('\n') == 1
    assert verify_password('master-pw', line.strip().split('|', 1)[1])
    assert oct((tmp_path / 'dovecot-masters.cf').stat().st_mode & 0o777) == '0o600'
    again = apply(tmp_path, name='admin', password='master-pw')
    assert again['changed_files'] == [] and again['created'] == again['updated'] == again['removed'] == []
    assert read(tmp_path) == line


def test_hash_written_by_doveadm_style_is_kept_and_changed_password_rehashed(tmp_path):
    (tmp_path / 'dovecot-masters.cf').write_text('# by setup dovecot-master add\nadmin|%s\n' % hash_password('old'))
    before = read(tmp_path)
    assert apply(tmp_path, name='admin', password='old')['changed_files'] == []
    assert read(tmp_path) == before
    r = apply(tmp_path, name='admin', password='new')
    assert r['updated'] == ['admin']
    assert read(tmp_path).startswith('# by setup dovecot-master add\n')
    assert verify_password('new', masters_in(tmp_path)['admin'])


def test_on_create_never_touches_an_existing_hash(tmp_path):
    stored = hash_password('old')
    (tmp_path / 'dovecot-masters.cf').write_text('admin|%s\n' % stored)
    r = apply(tmp_path, name='admin', password='new', update_password='on_create')
    assert r['changed_files'] == [] and masters_in(tmp_path)['admin'] == stored


def test_password_hash_and_scheme(tmp_path):
    given = hash_password('pw', 'BLF-CRYPT')
    r = apply(tmp_path, name='admin', password_hash=given)
    assert masters_in(tmp_path)['admin'] == given and r['created'] == ['admin']
    # scheme given explicitly and different from the stored one: re-hashed even though the password matches
    r = apply(tmp_path, name='admin', password='pw', scheme='SHA512-CRYPT')
    assert r['updated'] == ['admin'] and masters_in(tmp_path)['admin'].startswith('{SHA512-CRYPT}')
    with pytest.raises(ValidationError, match='password_hash: the hash is not a {ARGON2ID} hash'):
        apply(tmp_path, name='admin', password_hash=given, scheme='ARGON2ID')


def test_uppercase_name_lowered_with_warning_and_found_case_insensitively(tmp_path):
    r = apply(tmp_path, name='Admin', password='pw')
    assert r['created'] == ['admin'] and 'normalised' in r['warnings'][0]
    assert 'admin' in masters_in(tmp_path)


def test_bulk_exclusive_removes_unlisted_and_keeps_comments(tmp_path):
    (tmp_path / 'dovecot-masters.cf').write_text('# keep me\nold|%s\nadmin|%s\n'
                                                 % (hash_password('x'), hash_password('a')))
    r = apply(tmp_path, masters=[{'name': 'admin', 'password': 'a'}, {'name': 'new', 'password': 'n'}],
              exclusive=True)
    assert r['created'] == ['new'] and r['removed'] == ['old'] and r['updated'] == []
    text = read(tmp_path)
    assert text.startswith('# keep me\nadmin|') and set(masters_in(tmp_path)) == {'admin', 'new'}


def test_exclusive_with_no_master_keeps_an_empty_file(tmp_path):
    """DMS's change detector ignores a file that disappears: the file must stay, without masters."""
    (tmp_path / 'dovecot-masters.cf').write_text('admin|%s\n' % hash_password('a'))
    r = apply(tmp_path, masters=[], exclusive=True)
    assert r['removed'] == ['admin']
    assert read(tmp_path) == ''


def test_absent_removes_every_line_of_the_master(tmp_path):
    (tmp_path / 'dovecot-masters.cf').write_text('ADMIN|%s\nother|%s\nadmin|%s\n'
                                                 % (hash_password('a'), hash_password('o'), hash_password('b')))
    r = apply(tmp_path, name='admin', state='absent')
    assert r['removed'] == ['admin'] and set(masters_in(tmp_path)) == {'other'}
    assert apply(tmp_path, name='admin', state='absent')['changed_files'] == []


def test_duplicate_lines_are_merged(tmp_path):
    stored = hash_password('a')
    (tmp_path / 'dovecot-masters.cf').write_text('admin|%s\nadmin|%s\n' % (stored, hash_password('b')))
    r = apply(tmp_path, name='admin', password='a')
    assert r['updated'] == ['admin'] and read(tmp_path) == 'admin|%s\n' % stored


def test_check_mode_predicts_and_writes_nothing(tmp_path):
    r = apply(tmp_path, check_mode=True, name='admin', password='pw')
    assert r['created'] == ['admin'] and r['changed_files'] == ['dovecot-masters.cf']
    assert read(tmp_path) is None


@pytest.mark.parametrize('name, message', [
    ('', 'must not be empty'),
    ('ad|min', "'|', the column separator of dovecot-masters.cf"),
    ('ad:min', "':', the column separator of Dovecot's masterdb"),
    ('ad*min', "'\\*', the separator of master logins"),
    ('ad min', 'white space'),
    ('ad\tmin', 'control character'),
    ('admin\nroot|x', 'line break'),
    ('#admin', 'begins with "#"'),
    ('ädmin', 'non-ASCII'),
    ('a' * 255, 'longer than 254'),
])
def test_bad_names_are_refused_naming_the_field(tmp_path, name, message):
    with pytest.raises(ValidationError, match=r'^name: .*%s' % message):
        _masters.normalize(params(name=name, password='pw'))
    with pytest.raises(ValidationError, match=r'^masters\[0\]\.name: '):
        _masters.normalize(params(masters=[{'name': name, 'password': 'pw'}]))


def test_name_of_an_account_is_refused_with_nothing_written(tmp_path):
    (tmp_path / 'postfix-accounts.cf').write_text('alice@example.com|%s\n' % hash_password('a'))
    with pytest.raises(ValidationError, match=r"name: 'alice@example.com' is an account in postfix-accounts.cf"):
        apply(tmp_path, name='Alice@Example.com', password='pw')
    assert read(tmp_path) is None


def test_other_refusals(tmp_path):
    with pytest.raises(ValidationError, match=r"masters\[1\]\.name: 'a' is listed twice"):
        _masters.normalize(params(masters=[{'name': 'a', 'password': 'x'}, {'name': 'A', 'password': 'y'}]))
    with pytest.raises(ValidationError, match='exclusive: needs the masters list'):
        _masters.normalize(params(name='a', password='x', exclusive=True))
    with pytest.raises(ValidationError, match='password: has no meaning with state=absent'):
        _masters.normalize(params(name='a', password='x', state='absent'))
    with pytest.raises(ValidationError, match='password: contains a line break'):
        _masters.normalize(params(name='a', password='x\n'))
    with pytest.raises(ValidationError, match="name: 'a' does not exist yet"):
        apply(tmp_path, name='a')


def test_shares_the_engine_of_dms_account():
    """One implementation: both modules take their password handling from _passwords."""
    for name in ('decide_hashes', 'check_password_options', 'require_schemes'):
        assert getattr(_masters, name) is getattr(_passwords, name) is getattr(_accounts, name), name
