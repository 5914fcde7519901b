# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each role's README.md is the rendering of its meta/argument_specs.yml (hack/role-readme.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in ROOT.glob('roles/*/meta/argument_specs.yml'))


def _renderer():
    spec = importlib.util.spec_from_file_location('role_readme', ROOT / 'hack' / 'role-readme.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('role', ROLES, ids=[r.name for r in ROLES])
def test_readme_matches_argument_specs(role):
    expected = _renderer().render(role)
    actual = (role / 'README.md').read_text()
    assert actual == expected, 'run: python hack/role-readme.py %s --write' % role.relative_to(ROOT)


def test_every_default_is_documented():
    for role in ROLES:
        import yaml
        defaults = yaml.safe_load((role / 'defaults' / 'main.yml').read_text()) or {}
        options = yaml.safe_load((role / 'meta' / 'argument_specs.yml').read_text())['argument_specs']['main']['options']
        assert sorted(set(defaults) - set(options)) == [], role.name
