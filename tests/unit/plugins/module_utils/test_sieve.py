# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the dms_sieve logic (plugins/module_utils/_sieve.py): Sieve generation and quoting, validation,
the files written, the accounts comment that makes DMS copy user scripts, and sievec (Debian's dovecot-sieve,
installed by hack/test.sh) on scratch copies."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _sieve
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

ACCOUNTS = 'postfix-accounts.cf'
HASH = '{SHA512-CRYPT}$6$salt$hashhashhash'
ALICE = 'alice@example.com'
FILEINTO = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "X"; }\n'

needs_sievec = pytest.mark.skipif(_sieve.find_sievec() is None, reason='sievec (dovecot-sieve) not installed')


def params(**kwargs):
    base = dict(address=None, scope=None, script=None, vacation=None, forward=None, state='present',
                scripts=None, exclusive=False, validate='auto')
    base.update(kwargs)
    return base


def apply(config_dir, check=False, **kwargs):
    p = params(**kwargs)
    entries, dummy = _sieve.normalize(p)
    with ConfigDir(str(config_dir), check_mode=check) as cfg:
        result = _sieve.plan(cfg, p, entries)
        fixes = result.pop('_mode_fixes')
        changed, dummy = cfg.commit(extra_mode_fixes=fixes)
    return result, changed


@pytest.fixture
def config(tmp_path):
    (tmp_path / ACCOUNTS).write_text('# accounts\n%s|%s\n' % (ALICE, HASH))
    return tmp_path


def snapshot(path):
    return dict((p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith('.'))


# -- generation and quoting ---------------------------------------------------------


def test_quote_escapes_backslash_and_double_quote_only():
    assert _sieve.quote('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert _sieve.quote('line1\nline2') == '"line1\nline2"'


def test_vacation_generates_rfc5230_command():
    text = _sieve.generate(vacation={'subject': 'Away "now"', 'body': 'Back\nMonday', 'days': 3,
                                     'addresses': ['a@example.com', 'b@example.com']})
    assert 'require ["vacation"];\n' in text
    assert ('vacation :days 3 :subject "Away \\"now\\"" :addresses ["a@example.com", "b@example.com"] '
            '"Back\nMonday";\n') in text


def test_forward_generates_redirect_and_keep():
    text = _sieve.generate(forward={'addresses': ['x@example.org', 'y@example.org'], 'keep': True})
    assert text.endswith('redirect "x@example.org";\nredirect "y@example.org";\nkeep;\n')
    text = _sieve.generate(forward={'addresses': ['x@example.org'], 'keep': False})
    assert 'keep;' not in text and 'require' not in text


@pytest.mark.parametrize('subject', ['x"; discard; #', 'a\\"; discard; "', 'end\\'])
@needs_sievec
def test_hostile_subject_stays_one_string(tmp_path, subject):
    """A subject that tries to close the string compiles to one vacation command (sievec), no discard."""
    text = _sieve.generate(vacation={'subject': subject, 'body': 'b', 'days': 1})
    assert _sieve.Compiler(_sieve.find_sievec()).check(text) is None
    body = [line for line in text.splitlines() if not line.startswith('#')]
    assert len([line for line in body if line.startswith('vacation ')]) == 1
    assert not any(line.startswith('discard') for line in body)


@needs_sievec
def test_generated_scripts_compile():
    compiler = _sieve.Compiler(_sieve.find_sievec())
    text = _sieve.generate(vacation={'subject': 'Ünïcode', 'body': 'multi\n.\nline "q" \\', 'days': 60,
                                     'addresses': ['a@example.com']},
                           forward={'addresses': ['b@example.org'], 'keep': True})
    assert compiler.check(text) is None


@needs_sievec
def test_sievec_message_without_scratch_paths():
    message = _sieve.Compiler(_sieve.find_sievec()).check('require "fileinto";\nfileinto "x"\n')
    assert 'line 3' in message and 'dms-sieve-' not in message


# -- validation --------------------------------------------------------------------


@pytest.mark.parametrize('kwargs, field', [
    (dict(address='../x@example.com', script='keep;'), 'address'),
    (dict(address='a/b@example.com', script='keep;'), 'address'),
    (dict(address='alice@example.com', scope='before', script='keep;'), 'scope'),
    (dict(scope='sideways', script='keep;'), 'scope'),
    (dict(address=ALICE), 'script'),
    (dict(address=ALICE, script='   '), 'script'),
    (dict(address=ALICE, script='keep;\x00'), 'script'),
    (dict(address=ALICE, vacation={'body': 'b', 'subject': 'a\nBcc: x@evil.test'}), 'vacation.subject'),
    (dict(address=ALICE, vacation={'body': 'b', 'subject': 'a\rb'}), 'vacation.subject'),
    (dict(address=ALICE, vacation={'subject': 's'}), 'vacation.body'),
    (dict(address=ALICE, vacation={'body': 'b', 'days': 0}), 'vacation.days'),
    (dict(address=ALICE, vacation={'body': 'b', 'days': 61}), 'vacation.days'),
    (dict(address=ALICE, vacation={'body': 'b', 'addresses': ['no-at']}), 'vacation.addresses[0]'),
    (dict(address=ALICE, forward={'addresses': []}), 'forward.addresses'),
    (dict(address=ALICE, forward={'addresses': [ALICE]}), 'forward.addresses'),
    (dict(address=ALICE, forward={'addresses': ['x"@example.com']}), 'forward.addresses[0]'),
    (dict(scope='before', vacation={'body': 'b'}), 'vacation'),
    (dict(address=ALICE, state='absent', script='keep;'), 'script'),
    (dict(address=ALICE, script='keep;', exclusive=True), 'exclusive'),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValidationError) as exc:
        _sieve.normalize(params(**kwargs))
    assert str(exc.value).startswith(field + ':'), str(exc.value)


def test_duplicate_in_list_named():
    with pytest.raises(ValidationError, match=r'scripts\[1\].address: alice@example.com is listed twice'):
        _sieve.normalize(params(scripts=[dict(address=ALICE, script='keep;'),
                                         dict(address='Alice@Example.com', script='keep;')]))


# -- files -------------------------------------------------------------------------


def test_user_script_written_0644_and_accounts_comment_added(config):
    result, changed = apply(config, address=ALICE, script=FILEINTO, validate='never')
    assert changed == [ALICE + '.dovecot.sieve', ACCOUNTS]
    assert result['created'] == [ALICE] and result['applies_live'] and not result['restart_required']
    path = config / (ALICE + '.dovecot.sieve')
    assert path.read_text() == FILEINTO
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    accounts = (config / ACCOUNTS).read_text()
    assert accounts.startswith('# accounts\n%s|%s\n# dms_sieve ' % (ALICE, HASH))


def test_second_run_changes_nothing(config):
    apply(config, address=ALICE, script=FILEINTO, validate='never')
    before = snapshot(config)
    result, changed = apply(config, address=ALICE, script=FILEINTO, validate='never')
    assert changed == [] and snapshot(config) == before and not result['applies_live']


def test_changed_script_rewrites_the_comment_in_place(config):
    apply(config, address=ALICE, script=FILEINTO, validate='never')
    first = (config / ACCOUNTS).read_text()
    apply(config, address=ALICE, script='keep;\n', validate='never')
    second = (config / ACCOUNTS).read_text()
    assert first != second
    assert second.count('# dms_sieve ') == 1 and second.splitlines()[:2] == first.splitlines()[:2]


def test_check_mode_predicts_and_writes_nothing(config):
    before = snapshot(config)
    result, changed = apply(config, check=True, address=ALICE, script=FILEINTO, validate='never')
    assert changed == [ALICE + '.dovecot.sieve', ACCOUNTS] and snapshot(config) == before


def test_absent_writes_the_neutral_script(config):
    apply(config, address=ALICE, script=FILEINTO, validate='never')
    result, changed = apply(config, address=ALICE, state='absent')
    assert result['removed'] == [ALICE] and ACCOUNTS in changed
    assert (config / (ALICE + '.dovecot.sieve')).read_text() == _sieve.NEUTRAL
    result, changed = apply(config, address=ALICE, state='absent')
    assert changed == [] and result['removed'] == []


def test_absent_without_a_script_is_a_no_op(config):
    before = snapshot(config)
    result, changed = apply(config, address=ALICE, state='absent')
    assert changed == [] and snapshot(config) == before


def test_global_script_needs_restart_and_absent_deletes_it(config):
    result, changed = apply(config, scope='before', script=FILEINTO, validate='never')
    assert changed == ['before.dovecot.sieve'] and result['restart_required'] and not result['applies_live']
    assert 'dms_sieve' not in (config / ACCOUNTS).read_text()
    result, changed = apply(config, scope='before', state='absent')
    assert changed == ['before.dovecot.sieve'] and result['restart_required']
    assert not (config / 'before.dovecot.sieve').exists()


def test_exclusive_neutralises_unnamed_users_and_deletes_unnamed_globals(config):
    (config / 'bob@example.com.dovecot.sieve').write_text('discard;\n')
    (config / 'after.dovecot.sieve').write_text('keep;\n')
    result, changed = apply(config, scripts=[dict(address=ALICE, script=FILEINTO, state=None)], exclusive=True,
                            validate='never')
    assert sorted(result['removed']) == ['after', 'bob@example.com']
    assert (config / 'bob@example.com.dovecot.sieve').read_text() == _sieve.NEUTRAL
    assert not (config / 'after.dovecot.sieve').exists()


def test_login_spelling_of_the_accounts_file_names_the_script(tmp_path):
    (tmp_path / ACCOUNTS).write_text('Alice@Example.com|%s\n' % HASH)
    apply(tmp_path, address=ALICE, script='keep;', validate='never')
    assert (tmp_path / 'Alice@Example.com.dovecot.sieve').exists()


def test_no_account_warns_and_no_accounts_file_is_created(tmp_path):
    p = params(address=ALICE, script='keep;', validate='never')
    entries, dummy = _sieve.normalize(p)
    with ConfigDir(str(tmp_path)) as cfg:
        result = _sieve.plan(cfg, p, entries)
        cfg.commit()
    assert any('has no account' in w for w in result['_warnings'])
    assert not (tmp_path / ACCOUNTS).exists() and not result['applies_live']


@needs_sievec
def test_script_that_does_not_compile_is_refused_and_nothing_written(config):
    before = snapshot(config)
    with pytest.raises(ValidationError) as exc:
        apply(config, address=ALICE, script='require "fileinto";\nfileinto "x"\n', validate='always')
    assert str(exc.value).startswith('script: the script of alice@example.com does not compile (sievec)')
    assert 'line 3' in str(exc.value)
    assert snapshot(config) == before


def test_validate_always_without_sievec_fails(config, monkeypatch):
    monkeypatch.setattr(_sieve, 'find_sievec', lambda: None)
    before = snapshot(config)
    with pytest.raises(ValidationError, match='^validate: sievec was not found'):
        apply(config, address=ALICE, script=FILEINTO, validate='always')
    assert snapshot(config) == before


def test_validate_auto_without_sievec_warns(config, monkeypatch):
    monkeypatch.setattr(_sieve, 'find_sievec', lambda: None)
    p = params(address=ALICE, script=FILEINTO)
    entries, dummy = _sieve.normalize(p)
    with ConfigDir(str(config)) as cfg:
        result = _sieve.plan(cfg, p, entries)
        cfg.commit()
    assert any('without being compiled' in w for w in result['_warnings'])


def test_watched_accounts_file_is_renamed_after_the_scripts(config, monkeypatch):
    """The change detector must find the script in place when it sees the accounts file change."""
    order = []
    real_rename = os.rename
    monkeypatch.setattr(os, 'rename', lambda a, b: (order.append(os.path.basename(b)), real_rename(a, b)))
    apply(config, address='zed@example.com', script='keep;', validate='never')
    assert order == ['zed@example.com.dovecot.sieve', ACCOUNTS]
