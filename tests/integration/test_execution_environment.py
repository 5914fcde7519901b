# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX / AAP readiness: the example execution environment and the collection's EE metadata, with ansible-builder.

`ansible-builder build` itself needs the base image, which cannot be pulled here; `create` writes the whole build
context without it, and `introspect` is what the build runs to collect the collections' requirements.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import yaml

from dmstest import COLLECTION_ROOT, COLLECTIONS_PATH, ansible_env

BIN = os.path.dirname(sys.executable)


def test_ansible_builder_creates_the_example_definition(tmp_path):
    context = tmp_path / 'context'
    proc = subprocess.run([os.path.join(BIN, 'ansible-builder'), 'create', '-f',
                           str(COLLECTION_ROOT / 'docs' / 'execution-environment.yml'), '--context', str(context)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / 'Containerfile').read_text()
    assert 'introspect' in containerfile and 'ansible-galaxy collection install' in containerfile
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    assert {'name': 'dms.mailserver'} in requirements['collections']


def test_the_collection_declares_its_execution_environment_requirements():
    proc = subprocess.run([os.path.join(BIN, 'ansible-builder'), 'introspect', '--sanitize', COLLECTIONS_PATH],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = yaml.safe_load(proc.stdout.split('\n', 1)[1])
    python = [line.split('#')[0].strip() for line in data['python'] if 'dms.mailserver' in line]
    wanted = [line.strip() for line in (COLLECTION_ROOT / 'meta' / 'ee-requirements.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
    assert python == wanted and len(wanted) == 4
    # The same packages the modules need on a managed host (requirements/runtime.txt pins them).
    runtime = [line.split('==')[0] for line in (COLLECTION_ROOT / 'requirements' / 'runtime.txt').read_text()
               .splitlines() if '==' in line]
    assert sorted(req.split('>=')[0] for req in python) == sorted(runtime)
    assert any(line.startswith('gcc [compile platform:rpm]') for line in data['system'])


def test_the_built_collection_carries_the_metadata_and_the_playbooks(tmp_path):
    proc = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path',
                           str(tmp_path), str(COLLECTION_ROOT)], capture_output=True, text=True, check=False,
                          timeout=300, env=ansible_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball, = tmp_path.glob('dms-mailserver-*.tar.gz')
    with tarfile.open(str(tarball)) as tar:
        names = set(tar.getnames())
    for name in ('meta/execution-environment.yml', 'meta/ee-requirements.txt', 'meta/ee-bindep.txt',
                 'playbooks/site.yml', 'playbooks/accounts.yml', 'playbooks/dns.yml', 'playbooks/validate.yml',
                 'roles/mailserver/tasks/dkim_shared.yml'):
        assert name in names, name
    workshop = ('hack/', 'extensions/molecule/', 'molecule/', 'tests/', 'demo-output/')
    assert not [n for n in names if n.startswith(workshop)]
