# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hack/playbook-docs.py: the docs site's page of each playbook says what the playbook file says."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted(ROOT.glob('playbooks/*.yml'))


def _generator():
    spec = importlib.util.spec_from_file_location('playbook_docs', ROOT / 'hack' / 'playbook-docs.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('playbook', PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_a_playbooks_page_has_its_header_command_and_plays(playbook):
    page = _generator().render(playbook)
    assert page.startswith('dms.mailserver.%s playbook\n' % playbook.stem)
    assert 'ansible-playbook -i inventory.yml dms.mailserver.%s' % playbook.stem in page
    comment = [line[2:] for line in playbook.read_text().splitlines()[1:4] if line.startswith('# ')]
    assert comment and all('   ' + line in page for line in comment)
    for play in yaml.safe_load(playbook.read_text()):
        assert '   ' + play['name'] in page


def test_every_playbook_gets_a_page_and_the_index_lists_it(tmp_path):
    assert _generator().main(['playbook-docs.py', str(ROOT), str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob('*.rst')) == sorted([p.stem for p in PLAYBOOKS] + ['index'])
    index = (tmp_path / 'index.rst').read_text()
    assert all('   %s\n' % p.stem in index for p in PLAYBOOKS)
