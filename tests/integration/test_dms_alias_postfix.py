# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catch-all safety proven by a real Postfix (acceptance 2 of dms_alias).

The files written by dms_alias and dms_account are loaded into a private,
running Debian Postfix exactly as DMS loads them (see postfix_instance.py for
why a running mail system and not per-table ``postmap -q`` lookups), mail is
sent over SMTP, and the test reads which maildir each message landed in.
That exercises Postfix's own ``virtual_alias_maps`` expansion (texthash and
pcre tables, exact address before ``@domain``, recursive) followed by
``virtual_mailbox_domains`` / ``virtual_mailbox_maps`` delivery, with nothing
re-implemented in Python.
"""
from __future__ import annotations

import pytest

from dmstest import doveadm_hash, run_play
from postfix_instance import PostfixInstance, usable

pytestmark = pytest.mark.skipif(usable() is not None, reason=usable() or '')


@pytest.fixture
def postfix():
    instance = PostfixInstance()
    yield instance
    instance.stop()


@pytest.fixture(scope='module')
def password_hash():
    return doveadm_hash('not-a-real-password')


def play(tmp_path, cfg, tasks, **kw):
    for task in tasks:
        for module_args in task.values():
            if isinstance(module_args, dict):
                module_args.setdefault('config_dir', str(cfg))
    result = run_play(tmp_path, tasks, **kw)
    assert not result.failed, result.stdout + result.stderr
    return result


def accounts_task(password_hash, *addresses):
    return {'dms.mailserver.dms_account': {'accounts': [{'address': a, 'password_hash': password_hash}
                                                        for a in addresses]}}


def test_control_postfix_swallows_accounts_without_self_aliases(tmp_path, postfix, password_hash):
    """The harness can see the problem: a hand-written catch-all takes a real account's mail (DMS's known issue).

    Without this, the next test could pass with a harness that never consults the alias table.
    """
    cfg = tmp_path / 'config'
    play(tmp_path, cfg, [accounts_task(password_hash, 'a@example.com', 'catch@other.test')])
    (cfg / 'postfix-virtual.cf').write_text('@example.com catch@other.test\n')
    postfix.apply(cfg)
    assert postfix.deliver('a@example.com') == ['other.test/catch']
    # And dms_alias repairs such a file: run it for the same catch-all, reload, and a@ gets its mail back.
    repair = {'alias': '@example.com', 'recipients': ['catch@other.test']}
    result = play(tmp_path, cfg, [{'dms.mailserver.dms_alias': repair}])
    assert result.result['changed'] and result.result['self_aliases_added'] == ['a@example.com']
    postfix.apply(cfg)
    assert postfix.deliver('a@example.com') == ['example.com/a']


def test_catch_all_never_swallows_accounts(tmp_path, postfix, password_hash):
    cfg = tmp_path / 'config'
    play(tmp_path, cfg, [accounts_task(password_hash, 'a@example.com', 'b@example.com', 'catch@other.test')])
    play(tmp_path, cfg, [{'dms.mailserver.dms_alias': {'aliases': [
        {'alias': '@example.com', 'recipients': ['catch@other.test']},
        {'alias': 'sales@example.com', 'recipients': ['a@example.com']},
    ]}}])
    postfix.apply(cfg)
    assert postfix.deliver('a@example.com') == ['example.com/a']
    assert postfix.deliver('b@example.com') == ['example.com/b']
    assert postfix.deliver('nobody@example.com') == ['other.test/catch']
    # An alias to an account of the catch-all domain: expanded again, a@'s self-alias keeps it with a@.
    assert postfix.deliver('sales@example.com') == ['example.com/a']

    # A third account added later with dms_account keeps the property.
    play(tmp_path, cfg, [accounts_task(password_hash, 'c@example.com')])
    postfix.apply(cfg)
    assert postfix.deliver('c@example.com') == ['example.com/c']
    assert postfix.deliver('a@example.com') == ['example.com/a']
    assert postfix.deliver('b@example.com') == ['example.com/b']
    assert postfix.deliver('nobody@example.com') == ['other.test/catch']

    # Removing the catch-all removes the self-aliases it needed; accounts still get mail, strangers are refused.
    result = play(tmp_path, cfg, [{'dms.mailserver.dms_alias': {'alias': '@example.com', 'state': 'absent'}}])
    assert result.result['self_aliases_removed'] == ['a@example.com', 'b@example.com', 'c@example.com']
    assert (cfg / 'postfix-virtual.cf').read_text() == 'sales@example.com a@example.com\n'
    postfix.apply(cfg)
    assert postfix.deliver('c@example.com') == ['example.com/c']
    code, text = postfix.deliver('nobody@example.com')
    assert code == 550 and 'unknown' in text.lower()


def test_regexp_alias_never_swallows_accounts(tmp_path, postfix, password_hash):
    """A regexp alias matching an account's address: the account keeps its mail, other matches go to the target.

    Also shows Postfix's lookup order the module relies on: an exact virtual alias beats a matching regexp line,
    and the first matching regexp line wins.
    """
    cfg = tmp_path / 'config'
    play(tmp_path, cfg, [accounts_task(password_hash, 'test1@example.com', 'qa@example.com', 'dev@example.com')])
    play(tmp_path, cfg, [{'dms.mailserver.dms_alias': {'aliases': [
        {'alias': '/^test9[0-9]*@example\\.com$/', 'type': 'regexp', 'recipients': ['dev@example.com']},
        {'alias': '/^test[0-9]+@example\\.com$/', 'type': 'regexp', 'recipients': ['qa@example.com']},
        {'alias': 'test5@example.com', 'recipients': ['dev@example.com']},
    ]}}])
    expected = 'test5@example.com dev@example.com\ntest1@example.com test1@example.com\n'
    assert (cfg / 'postfix-virtual.cf').read_text() == expected
    postfix.apply(cfg)
    assert postfix.deliver('test1@example.com') == ['example.com/test1']   # account: its own mailbox
    assert postfix.deliver('test2@example.com') == ['example.com/qa']      # regexp alias
    assert postfix.deliver('test91@example.com') == ['example.com/dev']    # first matching regexp line wins
    assert postfix.deliver('test5@example.com') == ['example.com/dev']     # exact virtual alias beats regexp
