# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailserver role on Docker: input checks, and the failure report of an unhealthy container.

The full deployment (SMTP/IMAP logins, aliases, DKIM, password change without restart) is
proven by the molecule default scenario; these are the cases it does not cover.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from dmstest import COLLECTION_ROOT, run_play

BASE_VARS = {'dms_hostname': 'mail.example.com', 'dms_image': 'dms-test:local', 'dms_image_pull': 'never',
             'dms_bind_address': '127.0.0.1', 'dms_dns_servers': ['127.0.0.1'],
             'dms_host_ports': {25: 32525, 465: 32465, 587: 32587, 993: 32993}}


def role_task(tmp_path, **overrides):
    role_vars = dict(BASE_VARS, dms_base_dir=str(tmp_path / 'dms'), dms_container_name='dms-role-test')
    role_vars.update(overrides)
    return {'name': 'role', 'ansible.builtin.include_role': {'name': 'dms.mailserver.mailserver'},
            'vars': role_vars}


@pytest.mark.parametrize('overrides,needle', [
    ({'dms_hostname': 'mail'}, 'fully-qualified'),
    ({'dms_hostname': 'mail example.com'}, 'fully-qualified'),
    ({'dms_image': 'dms-test:latest'}, 'pinned by a tag'),
    ({'dms_image': 'dms-test'}, 'pinned by a tag'),
    ({'dms_container_engine': 'lxc'}, 'dms_container_engine'),
    ({'dms_tls_type': 'manual'}, 'dms_tls_cert'),
    ({'dms_env': {'RELAY_PASSWORD': 'line\nbreak'}}, 'line break'),
    ({'dms_env': {'BAD-NAME': '1'}}, 'not a valid environment variable name'),
])
def test_bad_input_fails_before_anything_is_done(tmp_path, overrides, needle):
    res = run_play(tmp_path, [role_task(tmp_path, **overrides)])
    assert res.rc != 0
    failed = [t for t in res.tasks if t.get('failed')]
    assert failed and needle in str(failed[-1].get('msg', failed[-1])), failed
    assert not (tmp_path / 'dms').exists()
    assert 'line\\nbreak' not in res.stdout and 'line\nbreak' not in res.stdout  # the value is never shown


def test_unknown_env_keys_are_reported(tmp_path):
    res = run_play(tmp_path, [role_task(tmp_path, dms_state='absent', dms_env={'ENABLE_POPP3': 1})])
    assert res.rc == 0
    assert any('ENABLE_POPP3' in str(t.get('msg', '')) for t in res.tasks)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_unhealthy_container_fails_with_its_last_log_lines(tmp_path):
    subprocess.run(['bash', str(COLLECTION_ROOT / 'hack' / 'build-test-images.sh')], check=True,
                   stdout=subprocess.DEVNULL)
    # No account: like DMS, the image waits for one and never becomes healthy.
    task = role_task(tmp_path, dms_health_timeout=10, dms_env={'DMS_TEST_ACCOUNT_WAIT': 300}, dms_no_log=False)
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'did not become healthy within 10 s' in failed['msg']
        assert 'You need at least one mail account' in failed['msg']
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)
