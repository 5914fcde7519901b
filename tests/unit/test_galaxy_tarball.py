# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection tarball (ansible-galaxy collection build) holds the collection and nothing of the workshop:
build_ignore in galaxy.yml keeps out the tests and test images, the staging dir, the venv, the demo's output and
the hack/, extensions/molecule/ and bench/ tooling, even when a checkout has them all. And galaxy.yml has what Galaxy shows."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_TOP = {'MANIFEST.json', 'FILES.json', 'README.md', '.ansible-lint', 'changelogs', 'docs', 'meta', 'playbooks',
               'plugins', 'roles'}


def test_the_tarball_holds_the_collection_and_nothing_of_the_workshop(tmp_path):
    checkout = tmp_path / 'checkout'
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns('.git', 'output'))
    # What a used checkout has besides the collection.
    for rel in ('.venv/bin/python', '.build/collections/x', 'demo-output/credentials/admin@example.com',
                'plugins/modules/__pycache__/dms_account.cpython-311.pyc', 'tests/output/junk', '.pytest_cache/v',
                'old-dms-mailserver-0.0.1.tar.gz', 'importer_result.json', '.ansible/collections/x'):
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text('x')
    out = tmp_path / 'out'
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy'), 'collection', 'build',
                           '--output-path', str(out), str(checkout)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball, = out.glob('dms-mailserver-*.tar.gz')
    with tarfile.open(str(tarball)) as tar:
        names = tar.getnames()
    assert set(n.split('/')[0] for n in names) <= ALLOWED_TOP, sorted(set(n.split('/')[0] for n in names))
    assert not [n for n in names if '__pycache__' in n or n.endswith(('.pyc', '.tar.gz'))]
    # The collection itself is all there.
    for rel in ('plugins/modules/dms_account.py', 'roles/mailserver/meta/argument_specs.yml', 'playbooks/site.yml',
                'plugins/filter/dms_dns_records.yml', 'meta/runtime.yml'):
        assert rel in names


def test_galaxy_yml_has_what_galaxy_shows():
    data = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    for key in ('repository', 'documentation', 'issues', 'description', 'license'):
        assert data.get(key), key
    assert data['tags'] and all(t.isascii() and t.replace('_', '').isalnum() and t.islower() for t in data['tags'])
