# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mailserver role on Podman: converge, IMAP login over the published port, second run changed=0.

Podman runs here as root with runc and cgroupfs (no systemd), configured through a
CONTAINERS_CONF file of the test's own; the role runs the image's health check itself
because Podman's health-check timers need systemd. The image is the Docker-built test
image, loaded into Podman's storage.
"""
from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
import time

import pytest

from dmstest import COLLECTION_ROOT, run_play
from mailclient import imap_login

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='Podman and the test image need root here')

IMAGE = 'localhost/dms-test:16'
IMAGE_15 = 'localhost/dms-test:15.1'
PORT_IMAPS = 22993


def _image_id(*command):
    proc = subprocess.run(list(command), capture_output=True, text=True, check=False)
    return proc.stdout.strip().split(':')[-1] if proc.returncode == 0 else None


def _ensure_image(image=IMAGE):
    """The Docker-built test image in Podman's storage, loaded again whenever Docker's is another build (Podman
    keeps the image ID of a `docker save`)."""
    subprocess.run(['bash', str(COLLECTION_ROOT / 'hack' / 'build-test-images.sh')], check=True,
                   stdout=subprocess.DEVNULL)
    tag = image.split('/', 1)[1]
    wanted = _image_id('docker', 'image', 'inspect', '-f', '{{.Id}}', tag)
    if _image_id('podman', 'image', 'inspect', '-f', '{{.Id}}', image) != wanted:
        save = subprocess.Popen(['docker', 'save', tag], stdout=subprocess.PIPE)
        subprocess.run(['podman', 'load', '-q'], stdin=save.stdout, check=True, stdout=subprocess.DEVNULL)
        assert save.wait() == 0


def _imap_login(user, password):
    imap_login(PORT_IMAPS, user, password)


@pytest.fixture
def podman_env(tmp_path):
    if not shutil.which('podman'):
        pytest.fail('podman is not installed (hack/test.sh installs Debian\'s podman)')
    conf = tmp_path / 'containers.conf'
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    os.environ['CONTAINERS_CONF'] = str(conf)
    try:
        _ensure_image()
        yield {'CONTAINERS_CONF': str(conf)}
    finally:
        os.environ.pop('CONTAINERS_CONF', None)


def _certificate(directory):
    """A self-signed certificate for dms_tls_type: manual (like DMS, the image serves IMAPS only with TLS set up)."""
    cert, key = directory / 'cert.pem', directory / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                    '-subj', '/CN=mail.example.com', '-keyout', str(key), '-out', str(cert)],
                   check=True, capture_output=True)
    return {'dms_tls_type': 'manual', 'dms_tls_cert': str(cert), 'dms_tls_key': str(key)}


def test_role_on_podman(tmp_path, podman_env):
    base = tmp_path / 'dms'
    role_vars = {
        'dms_container_engine': 'podman', 'dms_container_name': 'dms-podman-test', 'dms_image': IMAGE,
        'dms_base_dir': str(base), 'dms_hostname': 'mail.example.com', 'dms_bind_address': '127.0.0.1',
        'dms_host_ports': {25: 22525, 143: 22143, 465: 22465, 587: 22587, 993: PORT_IMAPS},
        'dms_dns_servers': ['127.0.0.1'],
        'dms_health_timeout': 120, **_certificate(tmp_path),
        'dms_accounts': [{'address': 'alice@example.com', 'password': 'Podman-Alice-Pw-1'}],
    }
    role_task = {'name': 'role', 'ansible.builtin.include_role': {'name': 'dms.mailserver.mailserver'},
                 'vars': role_vars}
    try:
        first = run_play(tmp_path, [role_task], env=podman_env)
        assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
        _imap_login('alice@example.com', 'Podman-Alice-Pw-1')
        with pytest.raises(imaplib.IMAP4.error):
            _imap_login('alice@example.com', 'wrong-password')
        started = subprocess.run(['podman', 'inspect', '-f', '{{.State.StartedAt}}', 'dms-podman-test'],
                                 capture_output=True, text=True, check=True).stdout
        second = run_play(tmp_path, [role_task], env=podman_env, name='again')
        assert second.rc == 0
        assert not any(task.get('changed') for task in second.tasks), [t for t in second.tasks if t.get('changed')]
        assert subprocess.run(['podman', 'inspect', '-f', '{{.State.StartedAt}}', 'dms-podman-test'],
                              capture_output=True, text=True, check=True).stdout == started
        # An env change reaches the container (through the 0600 env file, never the podman command line).
        changed_env = dict(role_task, vars=dict(role_vars, dms_env={'LOG_LEVEL': 'debug'}))
        third = run_play(tmp_path, [changed_env], env=podman_env, name='env')
        assert third.rc == 0
        env = subprocess.run(['podman', 'inspect', '-f', '{{range .Config.Env}}{{println .}}{{end}}',
                              'dms-podman-test'], capture_output=True, text=True, check=True).stdout.split()
        assert 'LOG_LEVEL=debug' in env
        assert subprocess.run(['podman', 'inspect', '-f', '{{.State.StartedAt}}', 'dms-podman-test'],
                              capture_output=True, text=True, check=True).stdout != started
    finally:
        gone = run_play(tmp_path, [dict(role_task, vars=dict(role_vars, dms_state='absent'))], env=podman_env,
                        name='absent')
        assert gone.rc == 0
        assert subprocess.run(['podman', 'container', 'exists', 'dms-podman-test'], check=False).returncode == 1
        assert (base / 'docker-data' / 'dms' / 'config' / 'postfix-accounts.cf').exists()  # data stays


def test_dms_15_on_podman_gets_the_compose_health_check(tmp_path, podman_env):
    # DMS 15.1's image has no health check; the role gives the container DMS's compose.yaml one and runs it.
    _ensure_image(IMAGE_15)
    role_vars = {
        'dms_container_engine': 'podman', 'dms_container_name': 'dms-podman-test15', 'dms_image': IMAGE_15,
        'dms_base_dir': str(tmp_path / 'dms'), 'dms_hostname': 'mail.example.com', 'dms_bind_address': '127.0.0.1',
        'dms_host_ports': {25: 22625, 143: 22643, 465: 22665, 587: 22687, 993: 22693},
        'dms_dns_servers': ['127.0.0.1'],
        'dms_health_timeout': 120,
        'dms_accounts': [{'address': 'alice@example.com', 'password': 'Podman-15-Alice-Pw'}],
    }
    role_task = {'name': 'role', 'ansible.builtin.include_role': {'name': 'dms.mailserver.mailserver'},
                 'vars': role_vars}
    try:
        first = run_play(tmp_path, [role_task], env=podman_env)
        assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
        check = subprocess.run(['podman', 'inspect', '-f', '{{json .Config.Healthcheck}}', 'dms-podman-test15'],
                               capture_output=True, text=True, check=True).stdout
        assert "grep --silent ':smtp'" in check
        second = run_play(tmp_path, [role_task], env=podman_env, name='again')
        assert second.rc == 0
        assert not any(task.get('changed') for task in second.tasks), [t for t in second.tasks if t.get('changed')]
    finally:
        gone = run_play(tmp_path, [dict(role_task, vars=dict(role_vars, dms_state='absent'))], env=podman_env,
                        name='absent')
        assert gone.rc == 0


def test_stopped_container_fails_at_once_on_podman(tmp_path, podman_env):
    # A DMS start-up error (no network interface of that name) stops the container with status 0: the role
    # reports it with the last log lines at once instead of waiting out dms_health_timeout.
    role_vars = {
        'dms_container_engine': 'podman', 'dms_container_name': 'dms-podman-stop', 'dms_image': IMAGE,
        'dms_base_dir': str(tmp_path / 'dms'), 'dms_hostname': 'mail.example.com', 'dms_bind_address': '127.0.0.1',
        'dms_host_ports': {25: 22725, 143: 22743, 465: 22765, 587: 22787, 993: 22793},
        'dms_dns_servers': ['127.0.0.1'], 'dms_health_timeout': 300, 'dms_restart_policy': 'no', 'dms_no_log': False,
        'dms_env': {'NETWORK_INTERFACE': 'nope0'},
        'dms_accounts': [{'address': 'alice@example.com', 'password': 'Podman-Stop-Alice-Pw'}],
    }
    role_task = {'name': 'role', 'ansible.builtin.include_role': {'name': 'dms.mailserver.mailserver'},
                 'vars': role_vars}
    try:
        start = time.monotonic()
        res = run_play(tmp_path, [role_task], env=podman_env)
        assert res.rc != 0
        assert time.monotonic() - start < 150, 'the role waited for a stopped container'
        failed = [t for t in res.tasks if t.get('failed')][-1]
        assert 'stopped or has no health check' in failed['msg']
        assert 'NETWORK_INTERFACE appears to be misconfigured' in failed['msg']
    finally:
        subprocess.run(['podman', 'rm', '-f', 'dms-podman-stop'], check=False, capture_output=True)
