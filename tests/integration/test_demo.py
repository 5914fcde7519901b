# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's first command, `make demo` (hack/demo.sh), run twice on a copy of the checkout.

Config-only always; the full deployment (the test image in a container on 127.0.0.1) when this is root with
Docker, as on the CI machine. The copy uses this venv (DMS_VENV), so nothing is downloaded. The full run uses its
own container name and ports, so a demo the user left running is not touched.
"""
from __future__ import annotations

import imaplib
import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from dmstest import COLLECTION_ROOT

VENV = str(Path(sys.executable).parent.parent)
CONTAINER = 'dms-demo-test'
PORTS = {25: 15025, 143: 15143, 465: 15465, 587: 15587, 993: 15993}
IGNORED = ('.git', '.build', '.ansible', 'demo-output', '__pycache__', '.pytest_cache', 'output', '.hypothesis')


def checkout_copy(tmp_path):
    root = tmp_path / 'checkout'
    shutil.copytree(COLLECTION_ROOT, root, ignore=shutil.ignore_patterns(*IGNORED))
    return root


def tree(root):
    """Every path of the checkout outside demo-output/ and the staging dir .build/, with its content's size."""
    out = {}
    for path in sorted(Path(root).rglob('*')):
        rel = path.relative_to(root)
        if rel.parts[0] in ('demo-output', '.build') or '__pycache__' in rel.parts:
            continue
        out[str(rel)] = path.stat().st_size if path.is_file() else None
    return out


def demo(root, mode, *args, **extra_env):
    env = dict(os.environ, DMS_VENV=VENV, DMS_DEMO_MODE=mode, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               **extra_env)
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    # One stream, as a terminal shows it (the image build's progress lines go to stderr).
    proc = subprocess.run(['make', '-C', str(root), 'demo'] if not args else
                          ['bash', str(root / 'hack' / 'demo.sh')] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=1200,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-8000:]
    recap = re.findall(r'^localhost\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0', proc.stdout, re.M)
    assert len(recap) == 1, proc.stdout[-3000:]
    return proc.stdout, int(recap[0])


def package_tool_stubs(tmp_path):
    """A PATH directory whose dpkg-query, apt-get and rsync only record that they were called, and fail."""
    stubs, calls = tmp_path / 'stubs', tmp_path / 'stub-calls'
    stubs.mkdir()
    calls.write_text('')
    for name in ('dpkg-query', 'apt-get', 'rsync'):
        (stubs / name).write_text('#!/bin/sh\necho "%s $*" >> %s\nexit 1\n' % (name, calls))
        (stubs / name).chmod(0o755)
    return stubs, calls


def test_make_demo_config_only_twice(tmp_path):
    root = checkout_copy(tmp_path)
    before = tree(root)
    # Config-only needs no Debian package (README): the demo must not even ask dpkg or apt, nor use rsync.
    stubs, calls = package_tool_stubs(tmp_path)
    out, changed = demo(root, 'config', PATH='%s:%s' % (stubs, os.environ['PATH']))
    assert calls.read_text() == ''
    assert changed > 0
    assert 'mail._domainkey.example.com.' in out and 'IN MX    10 mail.example.com.' in out
    assert 'Config only' in out
    config = root / 'demo-output' / 'mailserver' / 'docker-data' / 'dms' / 'config'
    assert sorted(line.split('|')[0] for line in (config / 'postfix-accounts.cf').read_text().splitlines()) == \
        ['admin@example.com', 'alice@example.com', 'noreply@example.com']
    assert (root / 'demo-output' / 'dns' / 'dns-records.json').exists()
    written = dict((p, (root / 'demo-output' / p).read_bytes()) for p in
                   ('credentials/admin@example.com', 'mailserver/docker-data/dms/config/postfix-accounts.cf'))
    out, changed = demo(root, 'config')
    assert changed == 0, out[-3000:]
    assert all((root / 'demo-output' / p).read_bytes() == b for p, b in written.items())
    # Nothing outside demo-output/ (and the staging dir .build/) was written.
    assert tree(root) == before


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which('docker') is None,
                    reason='the full deployment needs root and Docker (config-only is tested above)')
def test_make_demo_full_deployment_twice_then_log_in(tmp_path):
    root = checkout_copy(tmp_path)
    # YAML, so that the port keys stay numbers as in the demo inventory.
    args = ['-e', 'dms_container_name=%s' % CONTAINER, '-e', '{dms_host_ports: %s}' % PORTS]
    try:
        out, changed = demo(root, 'full', *args)
        assert changed > 0
        assert 'docker-mailserver runs as the container %s' % CONTAINER in out
        # A quiet start (README): at most 60 lines before the first Ansible task, and only the image the demo runs
        # is built or checked (the image build's output goes to its log).
        before_ansible = out.split('\nTASK [', 1)[0].splitlines()
        assert len(before_ansible) <= 60, '\n'.join(before_ansible)
        images = re.findall(r'^build-test-images: (?:building )?(dms-[\w.:-]+)', out, re.M)
        assert images and set(images) <= {'dms-test:16', 'dms-test-base:trixie'}, images
        out, changed = demo(root, 'full', *args)
        assert changed == 0, out[-3000:]
        password = (root / 'demo-output' / 'credentials' / 'admin@example.com').read_text().split()[0]
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE   # the demo's self-signed certificate
        imap = imaplib.IMAP4_SSL('127.0.0.1', PORTS[993], ssl_context=ctx, timeout=30)
        try:
            assert imap.login('admin@example.com', password)[0] == 'OK'
        finally:
            imap.logout()
    finally:
        subprocess.run(['docker', 'rm', '-f', CONTAINER], capture_output=True, check=False)
