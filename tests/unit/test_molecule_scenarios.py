# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every step of a molecule scenario's test_sequence that runs a playbook has one, so that molecule does not warn
"Missing playbook" and report the scenario with missing files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent for p in ROOT.glob('extensions/molecule/*/molecule.yml'))
# The steps that run <step>.yml of the scenario (idempotence and check run converge.yml; verify runs testinfra).
PLAYBOOK_STEPS = {'create': 'create', 'prepare': 'prepare', 'converge': 'converge', 'idempotence': 'converge',
                  'check': 'converge', 'side_effect': 'side_effect', 'cleanup': 'cleanup', 'destroy': 'destroy',
                  'syntax': 'converge'}


def test_there_are_scenarios():
    assert [s.name for s in SCENARIOS] == ['default', 'firewall', 'multihost']


@pytest.mark.parametrize('scenario', SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_each_step_of_the_test_sequence_has_its_playbook(scenario):
    config = yaml.safe_load((scenario / 'molecule.yml').read_text())
    sequence = config['scenario']['test_sequence']
    missing = sorted(set('%s.yml (step %s)' % (PLAYBOOK_STEPS[s], s) for s in sequence
                         if s in PLAYBOOK_STEPS and not (scenario / ('%s.yml' % PLAYBOOK_STEPS[s])).exists()))
    assert missing == []
