# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json

import pytest
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.dms.mailserver.plugins.module_utils._common import (
    ECHO_LIMIT, NO_LOG_MASK, masked_params, prune_no_log_values,
)


class FakeModule:
    def __init__(self, values):
        self.no_log_values = set(values)


def test_pruning_keeps_exactly_the_values_exit_json_would_mask():
    passwords = ['pw-%d' % i for i in range(500)] + ['alice', 'secret-in-diff', 'e']
    result = {'created': ['alice@example.com', 'bob@example.com'], 'msg': 'ok',
              'diff': [{'after': 'x secret-in-diff y'}], 'nested': {'key-pw-7-x': ['pw-12']}}
    module = FakeModule(passwords)
    prune_no_log_values(module, result)
    assert module.no_log_values == {'alice', 'secret-in-diff', 'e', 'pw-7', 'pw-12', 'pw-1'}
    # the masked output is the same as with every value
    assert remove_values(result, module.no_log_values) == remove_values(result, set(passwords))


def test_small_sets_are_left_alone():
    module = FakeModule(['a', 'b'])
    prune_no_log_values(module, {'x': 'nothing'})
    assert module.no_log_values == {'a', 'b'}


def test_numbers_in_the_output_count_as_text():
    # exit_json masks a number whose text contains a no_log value (a port 587 when a password is '58').
    passwords = ['pw-%d' % i for i in range(100)] + ['58']
    result = {'port': 587, 'flag': True}
    module = FakeModule(passwords)
    prune_no_log_values(module, result)
    assert module.no_log_values == {'58'}
    assert remove_values(result, module.no_log_values) == remove_values(result, set(passwords))


def test_masked_params_masks_no_log_options_by_name_alias_and_in_suboptions():
    spec = {
        'password': {'type': 'str', 'no_log': True, 'aliases': ['pw']},
        'flag': {'type': 'bool', 'no_log': True},
        'unset': {'type': 'str', 'no_log': True},
        'name': {'type': 'str'},
        'items': {'type': 'list', 'elements': 'dict', 'options': {
            'address': {'type': 'str', 'aliases': ['name']},
            'password': {'type': 'str', 'no_log': True},
        }},
        'one': {'type': 'dict', 'options': {'password': {'type': 'str', 'no_log': True}}},
    }
    params = {'password': 's1', 'pw': 's1', 'flag': True, 'unset': None, 'name': 'x',
              'items': [{'address': 'a@b.c', 'name': 'a@b.c', 'password': 's2'}, {'address': 'd@b.c', 'password': None}],
              'one': {'password': 's3'}}
    masked = masked_params(spec, params)
    assert masked == {'password': NO_LOG_MASK, 'pw': NO_LOG_MASK, 'flag': True, 'unset': None, 'name': 'x',
                      'items': [{'address': 'a@b.c', 'name': 'a@b.c', 'password': NO_LOG_MASK},
                                {'address': 'd@b.c', 'password': None}],
                      'one': {'password': NO_LOG_MASK}}
    assert params['items'][0]['password'] == 's2', 'the params themselves are left as they are'


def _run_module(module_name, args, capsys):
    """Run a module's main() in this process and return its JSON output (what ansible-core gets)."""
    import importlib
    from ansible.module_utils.testing import patch_module_args
    module = importlib.import_module('ansible_collections.dms.mailserver.plugins.modules.%s' % module_name)
    capsys.readouterr()
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = capsys.readouterr().out
    return out, json.loads(out)


@pytest.mark.parametrize('failing', [False, True], ids=['success', 'validation-error'])
def test_bulk_account_passwords_never_reach_the_output(tmp_path, capsys, failing):
    # Regression: with 64 or more no_log values the pruning once looked at the result only, not at the module
    # arguments exit_json echoes, and every password of a bulk call was shown in invocation.module_args (-vvv).
    accounts = [{'address': 'user%d@example.com' % i, 'password': 'Secret-%d-%s' % (i, 'x' * (i % 7))}
                for i in range(100)]
    # A password that is also part of an address: ansible-core masks it there too, and so must the output.
    accounts.append({'address': 'tango@example.com', 'password': 'tango'})
    if failing:
        accounts.append({'address': 'bad address@example.com', 'password': 'Secret-last'})
    out, data = _run_module('dms_account', {'config_dir': str(tmp_path), 'accounts': accounts}, capsys)
    assert data.get('failed', False) is failing
    for item in accounts:
        assert item['password'] not in out
    echoed = data['invocation']['module_args']['accounts']
    assert len(echoed) == len(accounts)
    assert all(item['password'] == NO_LOG_MASK for item in echoed)
    assert echoed[0]['address'] == 'user0@example.com'
    assert '********@example.com' in out
    if not failing:
        assert len(data['created']) == len(accounts) and '********@example.com' in data['created']


def test_bulk_relay_passwords_never_reach_the_output(tmp_path, capsys):
    relays = [{'domain': 'd%d.example.com' % i, 'host': 'smtp.example.net', 'port': 587, 'username': 'u%d' % i,
               'password': 'relay-secret-%03d' % i} for i in range(80)]
    out, data = _run_module('dms_relay', {'config_dir': str(tmp_path), 'relays': relays}, capsys)
    assert data['changed'] is True
    for item in relays:
        assert item['password'] not in out
    assert [item['password'] for item in data['invocation']['module_args']['relays']] == [NO_LOG_MASK] * 80


def test_long_entry_lists_are_echoed_as_a_count():
    spec = {'items': {'type': 'list', 'elements': 'dict', 'options': {'password': {'type': 'str', 'no_log': True}}},
            'names': {'type': 'list', 'elements': 'str'}}
    params = {'items': [{'password': 's%d' % i} for i in range(5)], 'names': ['n'] * 5}
    assert masked_params(spec, params, limit=5)['items'] == [{'password': NO_LOG_MASK}] * 5
    expected = {'items': '<5 entries, not echoed: more than 4>', 'names': ['n'] * 5}
    assert masked_params(spec, params, limit=4) == expected
    assert ECHO_LIMIT == 1000
