# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_alias through real ansible-playbook runs, checked with Debian's Postfix tools.

Catch-all safety against a running Postfix is in test_dms_alias_postfix.py.
"""
from __future__ import annotations

import base64
import time

from dmstest import doveadm_hash, postmap_query, run_play, snapshot

ALIAS = 'dms.mailserver.dms_alias'


def task(config_dir, **args):
    args['config_dir'] = str(config_dir)
    return {'name': 'dms_alias', ALIAS: args}


def run(tmp_path, cfg, check=False, diff=False, **args):
    result = run_play(tmp_path, [task(cfg, **args)], check=check, diff=diff)
    assert not result.failed, result.stdout + result.stderr
    return result.result


# -- acceptance 1: what Postfix reads from the files --------------------------------------------------------


def test_postmap_resolves_virtual_aliases(tmp_path):
    cfg = tmp_path / 'config'
    run(tmp_path, cfg, aliases=[
        {'alias': 'info@example.com', 'recipients': ['alice@example.com', 'alice.private@example.org']},
        {'alias': 'Abuse@Example.com', 'recipients': ['Alice@example.com']},
        {'alias': '@example.net', 'recipients': ['catch@example.com']},
    ])
    table = 'texthash:%s' % (cfg / 'postfix-virtual.cf')
    assert postmap_query('info@example.com', table) == 'alice@example.com,alice.private@example.org'
    assert postmap_query('abuse@example.com', table) == 'alice@example.com'
    assert postmap_query('@example.net', table) == 'catch@example.com'
    assert postmap_query('nobody@example.com', table) is None
    # An appended recipient and a removed one are what Postfix sees next.
    run(tmp_path, cfg, alias='info@example.com', recipients=['bob@example.com'], append=True)
    run(tmp_path, cfg, alias='info@example.com', recipients=['alice@example.com'], append=True, state='absent')
    assert postmap_query('info@example.com', table) == 'alice.private@example.org,bob@example.com'


def test_postmap_resolves_regexp_aliases_in_the_given_order(tmp_path):
    cfg = tmp_path / 'config'
    run(tmp_path, cfg, aliases=[
        {'alias': '/^test[0-9]+@example\\.com$/', 'type': 'regexp', 'recipients': ['qa@example.com']},
        {'alias': '/^(.+)@old\\.example$/', 'type': 'regexp', 'recipients': ['${1}@example.com']},
        {'alias': '/^[a-z]+@example\\.com$/', 'type': 'regexp', 'recipients': ['all@example.com']},
    ])
    table = 'pcre:%s' % (cfg / 'postfix-regexp.cf')
    assert postmap_query('test42@example.com', table) == 'qa@example.com'
    assert postmap_query('TEST42@EXAMPLE.COM', table) == 'qa@example.com'       # PCRE tables ignore case
    assert postmap_query('jane.doe@old.example', table) == 'jane.doe@example.com'
    assert postmap_query('sales@example.com', table) == 'all@example.com'
    assert postmap_query('sales@example.org', table) is None
    # A new, more specific rule placed before the broad one wins for its address; the rest is unchanged.
    run(tmp_path, cfg, alias='/^sales@example\\.com$/', type='regexp', recipients=['bob@example.com'],
        before='/^[a-z]+@example\\.com$/')
    assert postmap_query('sales@example.com', table) == 'bob@example.com'
    assert postmap_query('support@example.com', table) == 'all@example.com'
    assert postmap_query('test42@example.com', table) == 'qa@example.com'


# -- acceptance 3: idempotence, check mode, diff, comments, bad input ----------------------------------------


EXISTING_VIRTUAL = ('# Aliases, managed partly by hand\r\n'
                    '\r\n'
                    'postmaster@example.com alice@example.com\r\n'
                    'root alice@example.com\r\n'
                    '   # an indented comment\r\n'
                    'team@example.com alice@example.com, bob@example.com\r\n'
                    'old@example.com bob@example.com\r\n'
                    'last@example.com x@example.org')   # no final newline
EXISTING_REGEXP = ('# first match wins\n'
                   'if /example\\.com$/\n'
                   '/^x/ x@example.com\n'
                   'endif\n'
                   '/^a/ a@example.com\n')
CHANGES = dict(aliases=[
    {'alias': 'team@example.com', 'recipients': ['carol@example.com'], 'append': True},
    {'alias': 'old@example.com', 'state': 'absent'},
    {'alias': 'new@example.com', 'recipients': ['dave@example.com']},
    {'alias': '/^b/', 'type': 'regexp', 'recipients': ['b@example.com'], 'after': '/^a/'},
])


def prepare(cfg):
    cfg.mkdir()
    (cfg / 'postfix-virtual.cf').write_bytes(EXISTING_VIRTUAL.encode())
    (cfg / 'postfix-regexp.cf').write_bytes(EXISTING_REGEXP.encode())


def test_check_mode_then_apply_then_idempotent(tmp_path):
    cfg = tmp_path / 'config'
    prepare(cfg)
    before = snapshot(cfg)

    checked = run(tmp_path, cfg, check=True, diff=True, **CHANGES)
    assert snapshot(cfg) == before, 'check mode wrote something'
    assert not (cfg / '.dms-mailserver.lock').exists()
    assert checked['changed']

    applied = run(tmp_path, cfg, diff=True, **CHANGES)
    for name in ('created', 'updated', 'removed', 'changed_files', 'diff'):
        assert checked[name] == applied[name], name
    assert applied['created'] == ['new@example.com', '/^b/']
    assert applied['updated'] == ['team@example.com']
    assert applied['removed'] == ['old@example.com']
    assert applied['changed_files'] == ['postfix-regexp.cf', 'postfix-virtual.cf']

    # Comments, blank lines, the local-only alias, hand-written separators and pcre if/endif blocks all stay;
    # the file gets LF endings and a final newline, as DMS itself would leave it.
    assert (cfg / 'postfix-virtual.cf').read_bytes() == (
        b'# Aliases, managed partly by hand\n'
        b'\n'
        b'postmaster@example.com alice@example.com\n'
        b'root alice@example.com\n'
        b'   # an indented comment\n'
        b'team@example.com alice@example.com, bob@example.com,carol@example.com\n'
        b'last@example.com x@example.org\n'
        b'new@example.com dave@example.com\n')
    assert (cfg / 'postfix-regexp.cf').read_bytes() == EXISTING_REGEXP.encode() + b'/^b/ b@example.com\n'

    diff = {d['after_header']: d for d in applied['diff']}
    assert '+new@example.com dave@example.com' in _unified(diff['postfix-virtual.cf'])
    assert '-old@example.com bob@example.com' in _unified(diff['postfix-virtual.cf'])
    assert diff['postfix-regexp.cf']['after'].endswith('/^b/ b@example.com\n')

    after = snapshot(cfg)
    again = run(tmp_path, cfg, diff=True, **CHANGES)
    assert not again['changed'] and again['changed_files'] == [] and again['diff'] == []
    assert (again['created'], again['updated'], again['removed']) == ([], [], [])
    assert snapshot(cfg) == after
    assert not run(tmp_path, cfg, check=True, **CHANGES)['changed']


def _unified(d):
    import difflib
    return '\n'.join(difflib.unified_diff(d['before'].splitlines(), d['after'].splitlines(), lineterm=''))


def test_check_mode_on_a_missing_config_dir_creates_nothing(tmp_path):
    cfg = tmp_path / 'config'
    result = run(tmp_path, cfg, check=True, alias='a@example.com', recipients=['b@example.com'])
    assert result['changed'] and result['created'] == ['a@example.com']
    assert not cfg.exists()


def test_backup(tmp_path):
    cfg = tmp_path / 'config'
    prepare(cfg)
    result = run(tmp_path, cfg, backup=True, alias='old@example.com', state='absent')
    assert len(result['backup_files']) == 1
    with open(result['backup_files'][0], 'rb') as handle:
        assert handle.read() == EXISTING_VIRTUAL.encode()


BAD_INPUTS = [
    (dict(alias='info', recipients=['a@example.com']), "alias: 'info' is not a valid address"),
    (dict(alias='in fo@example.com', recipients=['a@example.com']), 'alias:'),
    (dict(alias='@exa_mple.com', recipients=['a@example.com']), 'alias (catch-all domain)'),
    (dict(alias='info@example.com'), 'recipients: state=present needs at least one recipient'),
    (dict(alias='info@example.com', recipients=['a@example.com,b@example.com']), "recipients[0]:"),
    (dict(alias='info@example.com', recipients=['a@example.com\nb@example.com x']), 'recipients[0]:'),
    (dict(alias='info@example.com', recipients=['a@example.com', 'b@x', 'b@x']),
     "recipients[2]: 'b@x' is listed twice"),
    (dict(alias='info@example.com', recipients=['@example.org']), "recipients[0]: '@example.org'"),
    (dict(alias='info@example.com', recipients=['b@example.com'], state='absent'), 'set append=true'),
    (dict(alias='/^a/', recipients=['a@example.com']), 'set type=regexp'),
    (dict(alias='^a$', type='regexp', recipients=['a@example.com']), "alias: '^a$' is not a valid regexp"),
    (dict(alias='/a/q', type='regexp', recipients=['a@example.com']), "unknown flag 'q'"),
    (dict(alias='/(a/', type='regexp', recipients=['a@example.com']), 'does not compile'),
    (dict(alias='/^(a)@/', type='regexp', recipients=['${2}@example.com']), 'refers to group 2'),
    (dict(alias='/^z/', type='regexp', recipients=['a@example.com'], before='/^nope/'),
     "before: '/^nope/' is not a regexp alias in postfix-regexp.cf"),
    (dict(alias='info@example.com', recipients=['a@example.com'], before='/^a/'), 'before: only regexp aliases'),
    (dict(alias='alice@example.com', recipients=['b@example.com']), "alias: 'alice@example.com' is an account"),
    (dict(aliases=[{'alias': 'x@example.com', 'recipients': ['a@example.com']},
                   {'alias': 'y@example.com', 'recipients': ['not an address']}]), 'aliases[1].recipients[0]:'),
    (dict(aliases=[{'alias': 'x@example.com', 'recipients': ['a@example.com']},
                   {'alias': 'X@example.com', 'recipients': ['b@example.com']}]),
     "aliases[1].alias: 'x@example.com' is listed twice"),
    (dict(alias='x@example.com', recipients=['a@example.com'], exclusive=True), 'exclusive: needs the aliases'),
]


def test_bad_input_fails_cleanly_and_changes_nothing(tmp_path):
    """Every bad input fails with a message naming the field; not one byte of the config dir changes."""
    cfg = tmp_path / 'config'
    prepare(cfg)
    (cfg / 'postfix-accounts.cf').write_text('alice@example.com|%s\n' % doveadm_hash('x'))
    before = snapshot(cfg)
    tasks = []
    for args, dummy in BAD_INPUTS:
        t = task(cfg, **args)
        t['ignore_errors'] = True
        tasks.append(t)
    result = run_play(tmp_path, tasks)
    assert len(result.tasks) == len(BAD_INPUTS)
    for (args, expected), res in zip(BAD_INPUTS, result.tasks):
        assert res.get('failed'), (args, res)
        assert expected in res['msg'], (expected, res['msg'])
        assert 'Traceback' not in res.get('module_stderr', '')
    assert snapshot(cfg) == before


# -- acceptance 4: the same bytes as DMS's setup alias add / del ----------------------------------------------


def _contents_after_each(tmp_path, cfg, steps):
    """Run dms_alias steps in one play, reading postfix-virtual.cf after each; returns [(result, text|None)]."""
    tasks = []
    for args in steps:
        tasks.append(task(cfg, **args))
        tasks.append({'name': 'read', 'ansible.builtin.slurp': {'src': str(cfg / 'postfix-virtual.cf')},
                      'ignore_errors': True})
    result = run_play(tmp_path, tasks)
    out = []
    for i in range(0, len(result.tasks), 2):
        module_result, slurp = result.tasks[i], result.tasks[i + 1]
        assert not module_result.get('failed'), module_result
        text = None if slurp.get('failed') else base64.b64decode(slurp['content']).decode()
        out.append((module_result, text))
    return out


def test_append_reproduces_setup_alias_add(tmp_path):
    """Expected files are DMS's documented outcomes (dms-behaviour.md §1, §2.6): a new key is appended as
    ``alias recipient``, a further recipient is appended to its line as ``,recipient`` without a space, an
    existing recipient (any case) is not added again."""
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / 'postfix-virtual.cf').write_text('# hand-written\nkeep@example.com k@f.com\n')
    steps = [
        dict(alias='alias@example.com', recipients=['t1@f.com'], append=True),
        dict(alias='alias@example.com', recipients=['t2@f.com'], append=True),
        dict(alias='alias@example.com', recipients=['T2@f.com'], append=True),
        dict(alias='alias2@example.com', recipients=['t3@f.com'], append=True),
        dict(alias='alias@example.com', recipients=['t3@f.com'], append=True),
        dict(alias='@example.com', recipients=['t9@f.com'], append=True),
        dict(alias='keep@example.com', recipients=['k2@f.com', 'k3@f.com'], append=True),
    ]
    expected = [
        '# hand-written\nkeep@example.com k@f.com\nalias@example.com t1@f.com\n',
        '# hand-written\nkeep@example.com k@f.com\nalias@example.com t1@f.com,t2@f.com\n',
        None,   # DMS refuses ("already an alias for recipient") and writes nothing: unchanged
        '# hand-written\nkeep@example.com k@f.com\nalias@example.com t1@f.com,t2@f.com\nalias2@example.com t3@f.com\n',
        '# hand-written\nkeep@example.com k@f.com\nalias@example.com t1@f.com,t2@f.com,t3@f.com\n'
        'alias2@example.com t3@f.com\n',
        '# hand-written\nkeep@example.com k@f.com\nalias@example.com t1@f.com,t2@f.com,t3@f.com\n'
        'alias2@example.com t3@f.com\n@example.com t9@f.com\n',
        # Two recipients in one call = two setup alias add calls.
        '# hand-written\nkeep@example.com k@f.com,k2@f.com,k3@f.com\nalias@example.com t1@f.com,t2@f.com,t3@f.com\n'
        'alias2@example.com t3@f.com\n@example.com t9@f.com\n',
    ]
    previous = None
    for (result, text), want in zip(_contents_after_each(tmp_path, cfg, steps), expected):
        if want is None:
            assert not result['changed'] and text == previous
        else:
            assert result['changed'] and text == want
        previous = text


def test_absent_with_one_recipient_reproduces_setup_alias_del(tmp_path):
    """DMS's documented outcomes (dms-behaviour.md §1, §2.7): from ``t1,t2,t3`` removing t2 gives ``t1,t3``,
    then removing t1 gives ``t3``, then removing t3 removes the line; a missing alias or recipient is no change.
    """
    cfg = tmp_path / 'config'
    cfg.mkdir()
    start = ('# aliases\nalias@example.com t1@f.com,t2@f.com,t3@f.com\na3@example.com v@f.com,u@f.com\n'
             'a4@example.com v@f.com,u@f.com,w@f.com\n')
    (cfg / 'postfix-virtual.cf').write_text(start)

    def delete(alias, recipient):
        return dict(alias=alias, recipients=[recipient], append=True, state='absent')
    steps = [delete('alias@example.com', 't2@f.com'), delete('alias@example.com', 't1@f.com'),
             delete('alias@example.com', 't3@f.com'), delete('alias@example.com', 't3@f.com'),
             delete('a3@example.com', 'x@f.com'), delete('a3@example.com', 'u@f.com'),
             delete('a4@example.com', 'u@f.com')]
    expected = [
        '# aliases\nalias@example.com t1@f.com,t3@f.com\na3@example.com v@f.com,u@f.com\n'
        'a4@example.com v@f.com,u@f.com,w@f.com\n',
        '# aliases\nalias@example.com t3@f.com\na3@example.com v@f.com,u@f.com\na4@example.com v@f.com,u@f.com,w@f.com\n',
        '# aliases\na3@example.com v@f.com,u@f.com\na4@example.com v@f.com,u@f.com,w@f.com\n',
        None,
        None,
        '# aliases\na3@example.com v@f.com\na4@example.com v@f.com,u@f.com,w@f.com\n',
        '# aliases\na3@example.com v@f.com\na4@example.com v@f.com,w@f.com\n',
    ]
    previous = start
    for (result, text), want in zip(_contents_after_each(tmp_path, cfg, steps), expected):
        if want is None:
            assert not result['changed'] and text == previous
        else:
            assert result['changed'] and text == want, (text, want)
        previous = text


# -- acceptance 5: 2,000 aliases in one call ------------------------------------------------------------------


def test_bulk_2000_aliases(tmp_path):
    cfg = tmp_path / 'config'
    cfg.mkdir()
    (cfg / 'postfix-virtual.cf').write_text('# mine\nroot admin@example.org\n')
    items = [{'alias': 'alias%04d@example.com' % i, 'recipients': ['user%d@example.org' % i, 'all@example.org']}
             for i in range(2000)]

    start = time.monotonic()
    first = run(tmp_path, cfg, aliases=items)
    elapsed = time.monotonic() - start
    assert len(first['created']) == 2000 and first['changed']
    text = (cfg / 'postfix-virtual.cf').read_text()
    assert text.startswith('# mine\nroot admin@example.org\nalias0000@example.com user0@example.org,all@example.org\n')
    assert len(text.splitlines()) == 2002
    table = 'texthash:%s' % (cfg / 'postfix-virtual.cf')
    assert postmap_query('alias1999@example.com', table) == 'user1999@example.org,all@example.org'

    after = snapshot(cfg)
    start = time.monotonic()
    again = run(tmp_path, cfg, aliases=items)
    elapsed_again = time.monotonic() - start
    assert not again['changed'] and snapshot(cfg) == after

    keep = [item for i, item in enumerate(items) if i % 4]
    gone = ['alias%04d@example.com' % i for i in range(0, 2000, 4)]
    start = time.monotonic()
    pruned = run(tmp_path, cfg, aliases=keep, exclusive=True)
    elapsed_exclusive = time.monotonic() - start
    assert pruned['removed'] == gone
    assert (pruned['created'], pruned['updated']) == ([], [])
    lines = (cfg / 'postfix-virtual.cf').read_text().splitlines()
    assert lines[:2] == ['# mine', 'root admin@example.org']            # unmanaged lines stay
    assert [line.split()[0] for line in lines[2:]] == [item['alias'] for item in keep]
    assert postmap_query('alias0000@example.com', table) is None
    assert postmap_query('alias0001@example.com', table) == 'user1@example.org,all@example.org'
    print('2,000 aliases: create %.1f s, re-run %.1f s, exclusive %.1f s (whole ansible-playbook runs)'
          % (elapsed, elapsed_again, elapsed_exclusive))
    assert elapsed < 60 and elapsed_again < 60 and elapsed_exclusive < 60


# -- dms_account and dms_alias together -------------------------------------------------------------------------


def test_account_removal_takes_its_self_alias(tmp_path):
    cfg = tmp_path / 'config'
    h = doveadm_hash('x')
    tasks = [
        {'dms.mailserver.dms_account': {'config_dir': str(cfg), 'accounts': [
            {'address': 'a@example.com', 'password_hash': h}, {'address': 'b@example.com', 'password_hash': h}]}},
        task(cfg, alias='@example.com', recipients=['b@example.com']),
        {'dms.mailserver.dms_account': {'config_dir': str(cfg), 'address': 'a@example.com', 'state': 'absent'}},
        task(cfg, alias='@example.com', recipients=['b@example.com']),
    ]
    result = run_play(tmp_path, tasks)
    assert not result.failed, result.stdout
    assert result.tasks[1]['self_aliases_added'] == ['a@example.com', 'b@example.com']
    assert not result.tasks[3]['changed']
    assert (cfg / 'postfix-virtual.cf').read_text() == 'b@example.com b@example.com\n@example.com b@example.com\n'


def test_action_group_defaults(tmp_path):
    cfg = tmp_path / 'config'
    result = run_play(tmp_path, [{ALIAS: {'alias': 'a@example.com', 'recipients': ['b@example.com']}}],
                      module_defaults={'group/dms.mailserver.dms': {'config_dir': str(cfg)}})
    assert not result.failed, result.stdout
    assert (cfg / 'postfix-virtual.cf').read_text() == 'a@example.com b@example.com\n'
