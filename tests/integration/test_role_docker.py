# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailserver role on Docker: input checks (including the DMS release line and Dovecot settings), the health check
per line, and the failure report of an unhealthy container.

The full deployment (SMTP/IMAP logins, aliases, DKIM, password change without restart) is
proven by the molecule default scenario; these are the cases it does not cover.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from dmstest import COLLECTION_ROOT, run_play

# The test images stand in for DMS 16 (the default line) and DMS 15.1; hack/build-test-images.sh builds both.
IMAGE_16 = 'dms-test:16'
IMAGE_15 = 'dms-test:15.1'
# DMS's compose.yaml health check, which the role gives DMS 15.1 containers (the image has none).
COMPOSE_CHECK = ['CMD-SHELL', "ss --listening --ipv4 --tcp | grep --silent ':smtp' || exit 1"]

BASE_VARS = {'dms_hostname': 'mail.example.com', 'dms_image': IMAGE_16, 'dms_image_pull': 'never',
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
    ({'dms_image': 'dms-test:local'}, 'set dms_release_line'),
    ({'dms_image': 'dms-test:edge', 'dms_release_line': '17'}, 'dms_release_line'),
    ({'dms_image': 'docker-mailserver:14.0.0'}, 'not supported'),
    # A Dovecot 2.3 name on DMS 16 (Dovecot 2.4), and the reverse; the message gives the other version's name.
    ({'dms_dovecot_conf': {'disable_plaintext_auth': 'no'}}, 'auth_allow_cleartext'),
    ({'dms_dovecot_conf': {'ssl_cert': '</etc/dms/tls/cert.pem'}}, 'ssl_server_cert_file'),
    ({'dms_image': IMAGE_15, 'dms_dovecot_conf': {'auth_allow_cleartext': 'yes'}}, 'disable_plaintext_auth'),
    ({'dms_image': 'dms-test:local', 'dms_release_line': '15', 'dms_dovecot_conf': {'quota_storage_size': '1G'}},
     'plugin/quota_storage_size'),
    # 2.3 forms that Dovecot 2.4 parses but does not expand.
    ({'dms_dovecot_conf': {'mail_plugins': '$mail_plugins quota'}}, 'mail_plugins/<item> = yes'),
    ({'dms_dovecot_conf': {'mail_home': '/var/mail/%d/%n/home'}}, '%{user | domain}'),
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


@pytest.mark.parametrize('image,reported', [(IMAGE_15, True), (IMAGE_16, False)])
def test_known_env_follows_the_release_line(tmp_path, image, reported):
    # DMS 16 added names for the Dovecot 2.4 LDAP filters; DMS 15.1 does not read them.
    res = run_play(tmp_path, [role_task(tmp_path, dms_state='absent', dms_image=image,
                                        dms_env={'DOVECOT_USERDB_LDAP_FILTER': '(uid=%{user | username})'})])
    assert res.rc == 0
    warnings = [str(t.get('msg', '')) for t in res.tasks if 'DOVECOT_USERDB_LDAP_FILTER' in str(t.get('msg', ''))]
    assert bool(warnings) == reported
    if reported:
        assert 'DMS 15 does not document' in warnings[0]


@pytest.mark.parametrize('image,settings,lines', [
    (IMAGE_16, {'auth_allow_cleartext': 'yes', 'mail_plugins/quota': 'yes'},
     ['auth_allow_cleartext = yes', 'mail_plugins/quota = yes', 'recipient_delimiter = +']),
    (IMAGE_15, {'disable_plaintext_auth': 'no', 'plugin/quota_grace': '10%%'},
     ['disable_plaintext_auth = no', 'plugin/quota_grace = 10%%', 'recipient_delimiter = +']),
])
def test_config_only_writes_the_lines_dovecot_names(tmp_path, image, settings, lines):
    res = run_play(tmp_path, [role_task(tmp_path, dms_image=image, dms_manage_container=False,
                                        dms_dovecot_conf=settings, dms_recipient_delimiter='+')])
    assert res.rc == 0, res.stdout[-3000:]
    written = (tmp_path / 'dms' / 'docker-data' / 'dms' / 'config' / 'dovecot.cf').read_text().splitlines()
    assert [line for line in written if not line.startswith('#')] == lines


def _inspect(name):
    out = subprocess.run(['docker', 'inspect', name], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def _build_images():
    subprocess.run(['bash', str(COLLECTION_ROOT / 'hack' / 'build-test-images.sh')], check=True,
                   stdout=subprocess.DEVNULL)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_dms_15_gets_the_compose_health_check(tmp_path):
    _build_images()
    assert _inspect(IMAGE_15)['Config'].get('Healthcheck') is None  # like DMS 15.1.0's image
    task = role_task(tmp_path, dms_image=IMAGE_15, dms_health_timeout=180,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Line-15-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc == 0, res.stdout[-3000:]
        container = _inspect('dms-role-test')
        check = container['Config']['Healthcheck']
        assert check['Test'] == COMPOSE_CHECK
        assert check['Timeout'] == 3 * 10 ** 9 and check['Interval'] == 5 * 10 ** 9
        assert container['State']['Health']['Status'] == 'healthy'
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_dms_16_keeps_the_images_health_check(tmp_path):
    _build_images()
    task = role_task(tmp_path, dms_health_timeout=180,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'Line-16-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc == 0, res.stdout[-3000:]
        container = _inspect('dms-role-test')
        assert container['Config']['Healthcheck'] == _inspect(IMAGE_16)['Config']['Healthcheck']
        assert container['State']['Health']['Status'] == 'healthy'
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_container_without_health_check_fails(tmp_path):
    _build_images()
    # DMS 15.1's image (no HEALTHCHECK) declared as line 16: the role adds no check, so there is none to wait for.
    task = role_task(tmp_path, dms_image=IMAGE_15, dms_release_line='16', dms_health_timeout=60,
                     dms_accounts=[{'address': 'alice@example.com', 'password': 'No-Check-Alice-Pw'}])
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'has no health check' in failed['msg']
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_stopped_container_fails_at_once(tmp_path):
    _build_images()
    # No account and a 3 s account wait: the image gives up and stops, like DMS after a start-up error.
    task = role_task(tmp_path, dms_health_timeout=120, dms_restart_policy='no', dms_no_log=False,
                     dms_env={'DMS_TEST_ACCOUNT_WAIT': 3})
    try:
        res = run_play(tmp_path, [task])
        assert res.rc != 0
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'stopped (exit code' in failed['msg']
        assert 'no accounts were provided' in failed['msg']
    finally:
        subprocess.run(['docker', 'rm', '-f', 'dms-role-test'], check=False, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason='Docker and the test image need root here')
def test_unhealthy_container_fails_with_its_last_log_lines(tmp_path):
    _build_images()
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
