# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible.module_utils.common.parameters import remove_values

from ansible_collections.dms.mailserver.plugins.module_utils._common import prune_no_log_values


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
