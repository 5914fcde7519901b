# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of _aliases: line edits, regexp keys, catch-all safety, and dms_alias's normalize/plan."""
from __future__ import annotations

import time

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _aliases as al
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._table import (
    Table, parse_pipe, parse_regexp, parse_whitespace,
)
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

HASH = '{SHA512-CRYPT}$6$saltsalt$hash'


def virtual(text):
    return Table(text, parse_whitespace)


def regexp(text=''):
    return Table(text, parse_regexp, fold_case=False)


def accounts(*addresses):
    return Table(''.join('%s|%s\n' % (a, HASH) for a in addresses), parse_pipe)


# -- line edits -----------------------------------------------------------------


def test_split_and_format():
    assert al.split_recipients(' a@x.com, b@x.com\tc@x.com,,d@x.com ') == ['a@x.com', 'b@x.com', 'c@x.com', 'd@x.com']
    assert al.format_virtual('k@x.com', ['a@x.com', 'b@x.com']) == 'k@x.com a@x.com,b@x.com'


@pytest.mark.parametrize('raw, gone, expected', [
    # dms-behaviour.md §1 (setup alias del): middle, first, last, sole recipient.
    ('alias@example.com t1@f.com,t2@f.com,t3@f.com', ['t2@f.com'], 'alias@example.com t1@f.com,t3@f.com'),
    ('alias@example.com t1@f.com,t3@f.com', ['t1@f.com'], 'alias@example.com t3@f.com'),
    ('alias@example.com t1@f.com,t2@f.com', ['t2@f.com'], 'alias@example.com t1@f.com'),
    ('alias@example.com t3@f.com', ['t3@f.com'], None),
    # §1, "delete recipient from every alias" examples.
    ('a2 u,v', ['u'], 'a2 v'),
    ('a3 v,u', ['u'], 'a3 v'),
    ('a4 v,u,w', ['u'], 'a4 v,w'),
    # Hand-written separators are kept.
    ('a@x.com t1@f.com, t2@f.com, t3@f.com', ['t2@f.com'], 'a@x.com t1@f.com, t3@f.com'),
    ('a@x.com\tt1@f.com t2@f.com', ['t1@f.com'], 'a@x.com\tt2@f.com'),
    ('a@x.com t1@f.com,T2@F.com,t3@f.com', ['t2@f.com', 't3@f.com'], 'a@x.com t1@f.com'),
    ('a@x.com t1@f.com,t2@f.com  ', ['t2@f.com'], 'a@x.com t1@f.com'),
    ('/^a(.*)@x\\.com$/ t1@f.com,${1}@f.com', ['${1}@f.com'], '/^a(.*)@x\\.com$/ t1@f.com'),
])
def test_remove_from_line(raw, gone, expected):
    key = parse_regexp(raw)[0] if raw.startswith('/') else raw.split()[0]
    assert al.remove_from_line(raw, key, gone) == expected


def test_remove_from_line_keeps_pattern_with_space():
    raw = '/^a b@x\\.com$/ t1@f.com,t2@f.com'
    key = parse_regexp(raw)[0]
    assert key == '/^a b@x\\.com$/'
    assert al.remove_from_line(raw, key, ['t1@f.com']) == '/^a b@x\\.com$/ t2@f.com'


@pytest.mark.parametrize('raw, add, expected', [
    ('alias@example.com t1@f.com', ['t2@f.com'], 'alias@example.com t1@f.com,t2@f.com'),
    ('alias@example.com t1@f.com, t2@f.com', ['t3@f.com'], 'alias@example.com t1@f.com, t2@f.com,t3@f.com'),
    ('alias@example.com t1@f.com \t', ['t2@f.com', 't3@f.com'], 'alias@example.com t1@f.com,t2@f.com,t3@f.com'),
    ('alias@example.com', ['t1@f.com'], 'alias@example.com t1@f.com'),
    ('alias@example.com t1@f.com', [], 'alias@example.com t1@f.com'),
])
def test_append_to_line(raw, add, expected):
    assert al.append_to_line(raw, 'alias@example.com', add) == expected


def test_remove_recipients_everywhere_matches_setup_email_del():
    table = virtual('# c u@x.com\na1 u@x.com\na2 u@x.com,v@x.com\na3 v@x.com,u@x.com\na4 v@x.com,U@x.com,w@x.com\n'
                    'a5 v@x.com\n')
    touched = al.remove_recipients_everywhere(table, ['u@x.com'])
    assert touched == ['a1', 'a2', 'a3', 'a4']
    assert table.render() == '# c u@x.com\na2 v@x.com\na3 v@x.com\na4 v@x.com,w@x.com\na5 v@x.com\n'


# -- regexp keys ------------------------------------------------------------------


@pytest.mark.parametrize('key, problem', [
    ('^test@example\\.com$', "no closing '^' delimiter (write it as /pattern/flags)"),
    ('test@example\\.com', 'must start with a delimiter'),
    ('/test@example\\.com', 'no closing'),
    ('//', 'empty pattern'),
    ('/a/q', "unknown flag 'q'"),
    ('/a/b/', "unknown flag 'b'"),          # Postfix ends the pattern at the first unescaped "/"
    ('#a#', 'must start with a delimiter'),  # would be a comment line
    ('!/a/', 'must start with a delimiter'),
    ('/(a/', 'does not compile'),
    ('/a{2,1}/', 'does not compile'),
])
def test_bad_regexp_keys(key, problem):
    with pytest.raises(ValidationError) as exc:
        al.regexp_key(key, 'aliases[1].alias')
    assert str(exc.value).startswith('aliases[1].alias: ')
    assert problem in str(exc.value)


def test_regexp_key_semantics():
    assert al.compile_regexp_key('/^ABC@x\\.com$/').search('abc@x.com')          # case-insensitive by default
    assert not al.compile_regexp_key('/^ABC@x\\.com$/i').search('abc@x.com')     # "i" toggles that off
    assert al.compile_regexp_key('|a/b|').search('xa/b')                          # another delimiter
    assert al.compile_regexp_key('/a\\/b/').search('a/b')                         # escaped delimiter
    assert al.compile_regexp_key('/b@/').search('ab@x')
    assert not al.compile_regexp_key('/b@/A').search('ab@x')                      # A anchors at the start
    assert al.compile_regexp_key('/^(?<user>.+)@x\\.com$/').search('a@x.com')     # PCRE named group
    assert al.regexp_key('/^(a)(b)@x$/', 'alias')[1].groups == 2


@pytest.mark.parametrize('value, groups, expected', [
    ('${1}@example.com', 1, '${1}@example.com'),
    ('$1@Example.com', 1, '$1@example.com'),
    ('$(2).x@example.com', 2, '$(2).x@example.com'),
    ('qa@example.com', 0, 'qa@example.com'),
])
def test_regexp_recipients(value, groups, expected):
    assert al.regexp_recipient(value, 'recipients[0]', groups) == expected


@pytest.mark.parametrize('value, groups, problem', [
    ('${2}@example.com', 1, 'refers to group 2 but the pattern has 1 group'),
    ('$x@example.com', 1, 'not a substitution'),
    ('${1}', 1, 'not a valid address'),
])
def test_bad_regexp_recipients(value, groups, problem):
    with pytest.raises(ValidationError) as exc:
        al.regexp_recipient(value, 'recipients[0]', groups)
    assert str(exc.value).startswith('recipients[0]')
    assert problem in str(exc.value)


# -- catch-all safety -----------------------------------------------------------


def test_reconcile_adds_self_aliases_before_the_catch_all():
    acc = accounts('a@example.com', 'b@example.com', 'c@other.com', 'info@example.com')
    virt = virtual('info@example.com a@example.com\n# catch-all\n@example.com a@example.com\n')
    added = al.reconcile_self_aliases(acc, virt, regexp())
    assert added == ['a@example.com', 'b@example.com']
    assert virt.render() == ('info@example.com a@example.com\n# catch-all\na@example.com a@example.com\n'
                             'b@example.com b@example.com\n@example.com a@example.com\n')
    assert al.reconcile_self_aliases(acc, virt, regexp()) == []


def test_reconcile_covers_regexp_aliases():
    acc = accounts('test1@example.com', 'b@example.com')
    virt = virtual('x@y.com z@y.com\n')
    added = al.reconcile_self_aliases(acc, virt, regexp('/^test[0-9]+@example\\.com$/ qa@example.com\n'))
    assert added == ['test1@example.com']
    assert virt.render() == 'x@y.com z@y.com\ntest1@example.com test1@example.com\n'


def test_reconcile_without_catch_all_changes_nothing():
    virt = virtual('x@example.com a@example.com\n')
    assert al.reconcile_self_aliases(accounts('a@example.com'), virt, regexp()) == []
    assert not virt.changed


def test_reconcile_is_linear():
    """10,000 accounts behind one catch-all: one block insert, not 10,000 re-indexed inserts (took 11 s)."""
    acc = accounts(*['u%d@example.com' % i for i in range(10000)])
    virt = virtual('@example.com c@other.com\n')
    start = time.monotonic()
    assert len(al.reconcile_self_aliases(acc, virt, regexp())) == 10000
    assert time.monotonic() - start < 3
    assert virt.render().splitlines()[-1] == '@example.com c@other.com'


def test_prune_only_what_was_needed():
    acc = accounts('a@example.com', 'b@example.com', 'c@example.com')
    virt = virtual('a@example.com a@example.com\nb@example.com b@example.com\nc@example.com c@example.com\n'
                   '@example.com a@example.com\n')
    needed = al.swallowed_accounts(acc, virt, regexp())
    assert needed == {'a@example.com', 'b@example.com', 'c@example.com'}
    virt.remove('@example.com')
    assert al.prune_self_aliases(acc, virt, regexp(), needed, keep={'c@example.com'}) == ['a@example.com',
                                                                                          'b@example.com']
    assert virt.render() == 'c@example.com c@example.com\n'
    # Nothing needed before: a hand-written self-alias stays.
    assert al.prune_self_aliases(acc, virt, regexp(), set()) == []


# -- dms_alias: normalize and plan ------------------------------------------------------


DEFAULTS = dict(alias=None, type=None, recipients=None, append=False, before=None, after=None, state='present',
                aliases=None, exclusive=False, allow_account_overlap=False)


def params(**kw):
    out = dict(DEFAULTS)
    out.update(kw)
    return out


def apply(tmp_path, files=None, check=False, **kw):
    """Run normalize + plan + commit on a config dir; returns (result, warnings, files)."""
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    p = params(**kw)
    entries, warnings = al.normalize(p)
    with ConfigDir(str(tmp_path), check_mode=check) as cfg:
        result = al.plan(cfg, p, entries)
        cfg.commit()
    warnings.extend(result.pop('_warnings'))
    out = {}
    for name in ('postfix-virtual.cf', 'postfix-regexp.cf'):
        path = tmp_path / name
        out[name] = path.read_text() if path.exists() else None
    return result, warnings, out


@pytest.mark.parametrize('kw, problem', [
    (dict(alias='info'), 'alias: \'info\' is not a valid address'),
    (dict(alias='/^a/'), 'looks like a regexp alias; set type=regexp'),
    (dict(alias='a@x.com'), 'recipients: state=present needs at least one recipient'),
    (dict(alias='a@x.com', recipients=[]), 'recipients: state=present needs at least one recipient'),
    (dict(alias='a@x.com', recipients=['b@x.com,c@x.com']), "recipients[0]: 'b@x.com,c@x.com' is not a valid"),
    (dict(alias='a@x.com', recipients=['b@x.com', 'B@x.com']), "recipients[1]: 'b@x.com' is listed twice"),
    (dict(alias='a@x.com', recipients=['@x.com']), 'recipients[0]: \'@x.com\' is not a valid address'),
    (dict(alias='a@x.com', state='absent', recipients=['b@x.com']), 'set append=true to remove only'),
    (dict(alias='a@x.com', recipients=['b@x.com'], before='/x/'), 'before: only regexp aliases have an order'),
    (dict(alias='/a/', type='regexp', recipients=['b@x.com'], before='/b/', after='/c/'),
     'before: give before or after, not both'),
    (dict(alias='/a/', type='regexp', recipients=['b@x.com'], before='/a/'), "before: '/a/' is the alias itself"),
    (dict(alias='/a/', type='regexp', recipients=['b@x.com'], before='b'), 'before: \'b\' is not a valid regexp'),
    (dict(alias='a@x.com', recipients=['b@x.com'], exclusive=True), 'exclusive: needs the aliases list'),
    (dict(aliases=[], exclusive=True), 'exclusive: the aliases list is empty'),
    (dict(aliases=[dict(alias='a@x.com', recipients=['b@x.com']), dict(alias='A@x.com', recipients=['c@x.com'])]),
     "aliases[1].alias: 'a@x.com' is listed twice (also at aliases[0].alias)"),
    (dict(aliases=[dict(alias='/a/', type='regexp', recipients=['${2}@x.com'])]),
     'aliases[0].recipients[0]: \'${2}@x.com\' refers to group 2'),
])
def test_normalize_errors(kw, problem):
    with pytest.raises(ValidationError) as exc:
        al.normalize(params(**kw))
    assert problem in str(exc.value)


def test_normalize_defaults_and_warnings():
    entries, warnings = al.normalize(params(type='regexp', append=True, state='absent', aliases=[
        dict(alias='/a/'), dict(alias='X@Example.com', type='virtual', recipients=['Y@x.com'], state='present')]))
    assert [(e['type'], e['key'], e['append'], e['state']) for e in entries] == [
        ('regexp', '/a/', True, 'absent'), ('virtual', 'x@example.com', True, 'present')]
    assert entries[1]['recipients'] == ['y@x.com']
    assert len(warnings) == 2 and 'aliases[1].alias' in warnings[0] and 'aliases[1].recipients[0]' in warnings[1]


def test_present_sets_exact_recipients_and_keeps_equal_lines(tmp_path):
    files = {'postfix-virtual.cf': '# aliases\nA@x.com t1@f.com, T2@f.com\nb@x.com t1@f.com\n'}
    result, dummy, out = apply(tmp_path, files, aliases=[
        dict(alias='a@x.com', recipients=['t1@f.com', 't2@f.com']),   # same recipients: line kept as written
        dict(alias='b@x.com', recipients=['t2@f.com', 't1@f.com']),
        dict(alias='c@x.com', recipients=['t3@f.com'])])
    assert (result['created'], result['updated'], result['removed']) == (['c@x.com'], ['b@x.com'], [])
    assert out['postfix-virtual.cf'] == ('# aliases\nA@x.com t1@f.com, T2@f.com\nb@x.com t2@f.com,t1@f.com\n'
                                         'c@x.com t3@f.com\n')
    # Order given is order written: a reorder is a change.
    result, dummy, out = apply(tmp_path, alias='a@x.com', recipients=['t2@f.com', 't1@f.com'])
    assert result['updated'] == ['a@x.com']
    assert 'A@x.com t2@f.com,t1@f.com\n' in out['postfix-virtual.cf']


def test_duplicate_lines_of_a_key_are_merged(tmp_path):
    files = {'postfix-virtual.cf': 'a@x.com t1@f.com\nb@x.com t1@f.com\na@x.com t9@f.com\n'}
    result, dummy, out = apply(tmp_path, files, alias='a@x.com', recipients=['t1@f.com'])
    assert result['updated'] == ['a@x.com']
    assert out['postfix-virtual.cf'] == 'a@x.com t1@f.com\nb@x.com t1@f.com\n'


def test_absent(tmp_path):
    files = {'postfix-virtual.cf': 'a@x.com t1@f.com,t2@f.com\nb@x.com t1@f.com\n'}
    result, dummy, out = apply(tmp_path, files, aliases=[
        dict(alias='a@x.com', recipients=['t1@f.com', 'zz@f.com'], append=True, state='absent'),
        dict(alias='b@x.com', state='absent'),
        dict(alias='c@x.com', state='absent')])
    assert (result['updated'], result['removed']) == (['a@x.com'], ['b@x.com'])
    assert out['postfix-virtual.cf'] == 'a@x.com t2@f.com\n'


def test_account_overlap(tmp_path):
    files = {'postfix-accounts.cf': 'a@example.com|%s\n' % HASH, 'postfix-virtual.cf': 'x@y.com z@y.com\n'}
    with pytest.raises(ValidationError) as exc:
        apply(tmp_path, files, alias='A@example.com', recipients=['b@example.com'])
    assert "alias: 'a@example.com' is an account" in str(exc.value)
    assert (tmp_path / 'postfix-virtual.cf').read_text() == 'x@y.com z@y.com\n'
    # Its self-alias is fine; appending another recipient to it is an overlap again.
    result, dummy, out = apply(tmp_path, alias='a@example.com', recipients=['a@example.com'])
    assert result['created'] == ['a@example.com']
    with pytest.raises(ValidationError):
        apply(tmp_path, alias='a@example.com', recipients=['b@example.com'], append=True)
    result, dummy, out = apply(tmp_path, alias='a@example.com', recipients=['b@example.com'], append=True,
                               allow_account_overlap=True)
    assert 'a@example.com a@example.com,b@example.com\n' in out['postfix-virtual.cf']


def test_catch_all_lifecycle(tmp_path):
    files = {'postfix-accounts.cf': 'a@example.com|%s\nb@example.com|%s\n' % (HASH, HASH),
             'postfix-virtual.cf': '# mine\nb@example.com b@example.com\n'}   # hand-written, not needed yet
    result, dummy, out = apply(tmp_path, files, alias='@example.com', recipients=['c@other.com'])
    assert result['created'] == ['@example.com']
    assert result['self_aliases_added'] == ['a@example.com']
    assert out['postfix-virtual.cf'] == ('# mine\nb@example.com b@example.com\na@example.com a@example.com\n'
                                         '@example.com c@other.com\n')
    # Asking to remove a self-alias that is still needed keeps it, with a warning.
    result, warnings, out2 = apply(tmp_path, alias='a@example.com', state='absent')
    assert result['removed'] == [] and out2 == out
    assert "alias: 'a@example.com' was kept" in warnings[0]
    # Removing the catch-all removes the self-aliases it needed (b's line was needed too by then).
    result, dummy, out = apply(tmp_path, alias='@example.com', state='absent')
    assert result['removed'] == ['@example.com']
    assert result['self_aliases_removed'] == ['a@example.com', 'b@example.com']
    assert out['postfix-virtual.cf'] == '# mine\n'


def test_exclusive_scope_per_type(tmp_path):
    files = {'postfix-accounts.cf': 'a@example.com|%s\n' % HASH,
             'postfix-virtual.cf': 'root admin@x.com\nold@x.com t@f.com\nkeep@x.com t@f.com\n'
                                   'a@example.com a@example.com\n@example.com t@f.com\n',
             'postfix-regexp.cf': '/^r/ t@f.com\n'}
    result, dummy, out = apply(tmp_path, files, exclusive=True, aliases=[
        dict(alias='keep@x.com', recipients=['t@f.com']), dict(alias='@example.com', recipients=['t@f.com'])])
    assert result['removed'] == ['old@x.com']
    # root (no "@") and the needed self-alias stay; regexp file untouched (not in the list's types).
    assert out['postfix-virtual.cf'] == ('root admin@x.com\nkeep@x.com t@f.com\na@example.com a@example.com\n'
                                         '@example.com t@f.com\n')
    assert out['postfix-regexp.cf'] == '/^r/ t@f.com\n'
    # Without the catch-all the self-alias is no longer needed and goes as unlisted.
    result, dummy, out = apply(tmp_path, exclusive=True, aliases=[dict(alias='keep@x.com', recipients=['t@f.com'])])
    assert result['removed'] == ['@example.com', 'a@example.com']
    assert out['postfix-virtual.cf'] == 'root admin@x.com\nkeep@x.com t@f.com\n'
    # An empty list with type clears that file.
    result, dummy, out = apply(tmp_path, exclusive=True, aliases=[], type='regexp')
    assert result['removed'] == ['/^r/'] and out['postfix-regexp.cf'] == ''


RX = {'postfix-regexp.cf': '# rules\n/^a/ a@f.com\n/^b/ b@f.com\n# tail\n/^c/ c@f.com\n'}


def rx(key, **kw):
    return dict(dict(alias=key, type='regexp', recipients=['%s@f.com' % key.strip('/^')]), **kw)


@pytest.mark.parametrize('items, expected, updated', [
    # New between listed neighbours.
    ([rx('/^a/'), rx('/^n/'), rx('/^b/')], '# rules\n/^a/ a@f.com\n/^n/ n@f.com\n/^b/ b@f.com\n# tail\n/^c/ c@f.com\n',
     []),
    # New first: before the next listed alias.
    ([rx('/^n/'), rx('/^c/')], '# rules\n/^a/ a@f.com\n/^b/ b@f.com\n# tail\n/^n/ n@f.com\n/^c/ c@f.com\n', []),
    # New with nothing to go by: the end.
    ([rx('/^n/')], '# rules\n/^a/ a@f.com\n/^b/ b@f.com\n# tail\n/^c/ c@f.com\n/^n/ n@f.com\n', []),
    # Explicit anchors.
    ([rx('/^n/', before='/^a/')], '# rules\n/^n/ n@f.com\n/^a/ a@f.com\n/^b/ b@f.com\n# tail\n/^c/ c@f.com\n', []),
    ([rx('/^n/', after='/^a/')], '# rules\n/^a/ a@f.com\n/^n/ n@f.com\n/^b/ b@f.com\n# tail\n/^c/ c@f.com\n', []),
    # Existing aliases in the right order do not move, even with other lines between them.
    ([rx('/^a/'), rx('/^c/')], RX['postfix-regexp.cf'], []),
    ([rx('/^c/', after='/^a/')], RX['postfix-regexp.cf'], []),
    # Wrong order: the one out of place moves, the others stay.
    ([rx('/^c/'), rx('/^a/'), rx('/^b/')], '# rules\n/^c/ c@f.com\n/^a/ a@f.com\n/^b/ b@f.com\n# tail\n',
     ['/^c/']),
    ([rx('/^b/'), rx('/^a/')], '# rules\n/^b/ b@f.com\n/^a/ a@f.com\n# tail\n/^c/ c@f.com\n', ['/^b/']),
    ([rx('/^a/', after='/^b/')], '# rules\n/^b/ b@f.com\n/^a/ a@f.com\n# tail\n/^c/ c@f.com\n', ['/^a/']),
])
def test_regexp_order(tmp_path, items, expected, updated):
    result, dummy, out = apply(tmp_path, dict(RX), aliases=items)
    assert out['postfix-regexp.cf'] == expected
    assert result['updated'] == updated
    # And it holds: a second run changes nothing.
    result, dummy, again = apply(tmp_path, aliases=items)
    assert again == out and not (result['created'] or result['updated'] or result['removed'])


def test_regexp_update_keeps_position(tmp_path):
    result, dummy, out = apply(tmp_path, dict(RX), alias='/^b/', type='regexp', recipients=['z@f.com'])
    assert result['updated'] == ['/^b/']
    assert out['postfix-regexp.cf'] == '# rules\n/^a/ a@f.com\n/^b/ z@f.com\n# tail\n/^c/ c@f.com\n'


def test_regexp_missing_anchor_fails_before_writing(tmp_path):
    with pytest.raises(ValidationError) as exc:
        apply(tmp_path, dict(RX), aliases=[rx('/^n/', before='/^zz/')])
    assert "aliases[0].before: '/^zz/' is not a regexp alias in postfix-regexp.cf" in str(exc.value)
    assert (tmp_path / 'postfix-regexp.cf').read_text() == RX['postfix-regexp.cf']


def test_check_mode_writes_nothing(tmp_path):
    result, dummy, out = apply(tmp_path, {'postfix-virtual.cf': 'a@x.com t@f.com\n'}, check=True,
                               alias='b@x.com', recipients=['t@f.com'])
    assert result['created'] == ['b@x.com']
    assert out['postfix-virtual.cf'] == 'a@x.com t@f.com\n'


def test_regexp_if_blocks_are_not_crossed(tmp_path):
    files = {'postfix-regexp.cf': 'if /example\\.com$/\n/^x/ x@f.com\nendif\n/^a/ a@f.com\n'}
    with pytest.raises(ValidationError) as exc:
        apply(tmp_path, dict(files), alias='/^n/', type='regexp', recipients=['n@f.com'], before='/^x/')
    assert 'alias: placing' in str(exc.value) and 'if/endif block' in str(exc.value)
    with pytest.raises(ValidationError):
        apply(tmp_path, dict(files), aliases=[rx('/^a/'), rx('/^x/')])
    # Outside the block, anchoring works; a line inside the block can still be updated in place.
    result, dummy, out = apply(tmp_path, dict(files), aliases=[dict(rx('/^x/'), recipients=['y@f.com']),
                                                               rx('/^n/', before='/^a/')])
    assert out['postfix-regexp.cf'] == 'if /example\\.com$/\n/^x/ y@f.com\nendif\n/^n/ n@f.com\n/^a/ a@f.com\n'


def test_warns_about_regexp_lines_it_cannot_evaluate(tmp_path):
    files = {'postfix-regexp.cf': '/^a(?R)?@x/ a@f.com\n/^b/ b@f.com\n'}    # (?R): PCRE recursion, not Python
    result, warnings, out = apply(tmp_path, files, alias='/^c/', type='regexp', recipients=['c@f.com'])
    assert len(warnings) == 1 and "the alias '/^a(?R)?@x/' cannot be checked for catch-all safety" in warnings[0]
    assert out['postfix-regexp.cf'] == '/^a(?R)?@x/ a@f.com\n/^b/ b@f.com\n/^c/ c@f.com\n'
