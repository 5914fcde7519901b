"""Integration tests of the dms-test image (tests/dms-image).

The image stands in for docker-mailserver (DMS) in the collection's tests. These
tests build it (hack/build-test-images.sh, which also starts Docker), run one
container with a config volume written the way the collection writes it, and
check through SMTP and IMAP on 127.0.0.1 that it honours DMS's contract:
accounts with DMS's password hashes, aliases, quotas, live changes picked up by
the change detector, and OpenDKIM signing of authenticated submissions.

Needs root (debootstrap, dockerd, apt-get). Nothing leaves the machine: ports
are published on 127.0.0.1 only, the container gets 127.0.0.1 as its DNS
server, and the image refuses outbound mail.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import subprocess
import time
import uuid
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from mailclient import tls_context

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-test-images.sh"
IMAGE = os.environ.get("DMS_TEST_IMAGE", "dms-test:local")
HOSTNAME = "mail.example.com"
DOMAIN = "example.com"
DKIM_SELECTOR = "mail"

USER1 = f"user1@{DOMAIN}"
USER1_PASSWORD = "first-secret-1"
ALIAS1 = f"alias1@{DOMAIN}"
USER2 = f"user2@{DOMAIN}"
USER2_PASSWORD = "second-secret-2"

HEALTH_TIMEOUT = 90
CHANGE_TIMEOUT = 10
DELIVERY_TIMEOUT = 15

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: builds the image with debootstrap and may start dockerd",
)


# --------------------------------------------------------------------------
# Helpers


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def _ensure_command(command: str, package: str) -> str:
    """Path of COMMAND, installing Debian's PACKAGE with apt-get if missing."""
    found = shutil.which(command)
    if found is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            check=True,
            env=env,
        )
        found = shutil.which(command)
    assert found, f"{command} not found even after installing {package}"
    return found


def _password_hash(password: str, scheme: str = "SHA512-CRYPT") -> str:
    """A hash as `setup email add` writes it: `{SCHEME}...`."""
    doveadm = _ensure_command("doveadm", "dovecot-core")
    out = _run(doveadm, "pw", "-s", scheme, "-p", password).stdout.strip()
    assert out.startswith("{" + scheme + "}"), out
    return out


def _smtp_login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH PLAIN only: smtplib's login() retries a refused password with LOGIN,
    and each refusal costs Dovecot's failure delay and a penalty on the next
    login from the same address."""
    smtp.user, smtp.password = user, password
    smtp.auth("PLAIN", smtp.auth_plain)


class Container:
    """One running dms-test container with its ports published on 127.0.0.1."""

    def __init__(self, name: str) -> None:
        self.name = name

    def inspect(self, template: str) -> str:
        return _run("docker", "inspect", "-f", template, self.name).stdout.strip()

    def port(self, container_port: int) -> int:
        out = _run("docker", "port", self.name, f"{container_port}/tcp").stdout
        host, dummy, port = out.splitlines()[0].rpartition(":")
        assert host == "127.0.0.1", f"port {container_port} published on {host}"
        return int(port)

    def exec(self, *args: str) -> str:
        return _run("docker", "exec", self.name, *args).stdout

    def diagnostics(self) -> str:
        logs = _run("docker", "logs", "--tail", "40", self.name, check=False)
        mail_log = _run(
            "docker", "exec", self.name, "tail", "-n", "40", "/var/log/mail/mail.log",
            check=False,
        )
        return (
            f"\n--- docker logs ---\n{logs.stdout}{logs.stderr}"
            f"\n--- mail.log ---\n{mail_log.stdout}{mail_log.stderr}"
        )

    # Protocol clients -------------------------------------------------------

    def submission(self) -> smtplib.SMTP:
        """SMTP on 587 after STARTTLS."""
        smtp = smtplib.SMTP("127.0.0.1", self.port(587), timeout=15)
        smtp.ehlo("client.test")
        smtp.starttls(context=tls_context())
        smtp.ehlo("client.test")
        return smtp

    def imap(self, user: str, password: str) -> imaplib.IMAP4_SSL:
        imap = imaplib.IMAP4_SSL(
            "127.0.0.1", self.port(993), ssl_context=tls_context(), timeout=15
        )
        try:
            imap.login(user, password)
        except Exception:
            imap.shutdown()
            raise
        return imap

    def imap_login_works(self, user: str, password: str) -> bool:
        try:
            self.imap(user, password).logout()
        except imaplib.IMAP4.error:
            return False
        return True

    def wait_for_message(self, user: str, password: str, subject: str) -> bytes:
        """The headers of the message with SUBJECT in USER's INBOX."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            imap = self.imap(user, password)
            try:
                imap.select("INBOX", readonly=True)
                dummy, data = imap.search(None, "HEADER", "Subject", subject)
                ids = data[0].split()
                if ids:
                    dummy, fetched = imap.fetch(ids[-1], "(BODY.PEEK[HEADER])")
                    return next(part[1] for part in fetched if isinstance(part, tuple))
            finally:
                imap.logout()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no message '{subject}' in {user}'s INBOX after "
                    f"{DELIVERY_TIMEOUT}s{self.diagnostics()}"
                )
            time.sleep(0.5)


def _write_dkim_config(config: Path) -> None:
    """OpenDKIM key and tables as `setup config dkim` leaves them."""
    genkey = _ensure_command("opendkim-genkey", "opendkim-tools")
    keys = config / "opendkim" / "keys" / DOMAIN
    keys.mkdir(parents=True)
    _run(
        genkey, "--bits=2048", "--subdomains", f"--domain={DOMAIN}",
        f"--selector={DKIM_SELECTOR}", f"--directory={keys}",
    )
    assert (keys / f"{DKIM_SELECTOR}.private").is_file()
    record = f"{DKIM_SELECTOR}._domainkey.{DOMAIN}"
    (config / "opendkim" / "KeyTable").write_text(
        f"{record} {DOMAIN}:{DKIM_SELECTOR}:/etc/opendkim/keys/{DOMAIN}/{DKIM_SELECTOR}.private\n"
    )
    (config / "opendkim" / "SigningTable").write_text(f"*@{DOMAIN} {record}\n")
    (config / "opendkim" / "TrustedHosts").write_text("127.0.0.1\nlocalhost\n")


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def image() -> str:
    subprocess.run([str(BUILD_SCRIPT)], check=True)
    return IMAGE


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tmp_path_factory.mktemp("dms-config")
    (config / "postfix-accounts.cf").write_text(
        "# accounts\n"
        f"{USER1}|{_password_hash(USER1_PASSWORD)}\n"
    )
    (config / "postfix-virtual.cf").write_text(f"{ALIAS1} {USER1}\n")
    (config / "dovecot-quotas.cf").write_text(f"{USER1}:10M\n")
    _write_dkim_config(config)
    return config


@pytest.fixture(scope="module")
def container(image: str, config_dir: Path):
    name = f"dms-test-{uuid.uuid4().hex[:12]}"
    run = _run(
        "docker", "run", "--detach", "--name", name,
        "--hostname", HOSTNAME,
        # No DNS server but the container's own loopback: nothing is asked outside.
        "--dns", "127.0.0.1",
        "--label", "org.dms-test.pytest=1",
        "--volume", f"{config_dir}:/tmp/docker-mailserver",
        "--publish", "127.0.0.1::25",
        "--publish", "127.0.0.1::465",
        "--publish", "127.0.0.1::587",
        "--publish", "127.0.0.1::993",
        image,
        check=False,
    )
    box = Container(name)
    try:
        assert run.returncode == 0, f"docker run failed: {run.stderr}"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            state = box.inspect("{{.State.Status}} {{.State.Health.Status}}")
            if state == "running healthy":
                break
            if not state.startswith("running") or time.monotonic() > deadline:
                pytest.fail(f"container not healthy ({state}){box.diagnostics()}")
            time.sleep(0.5)
        yield box
    finally:
        _run("docker", "rm", "--force", "--volumes", name, check=False)


# --------------------------------------------------------------------------
# Tests


def test_smtp_auth_on_587_after_starttls(container: Container) -> None:
    with container.submission() as smtp:
        _smtp_login(smtp, USER1, USER1_PASSWORD)
    with container.submission() as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _smtp_login(smtp, USER1, "wrong-password")


def test_smtp_auth_on_465_implicit_tls(container: Container) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", container.port(465), context=tls_context(), timeout=15
    ) as smtp:
        _smtp_login(smtp, USER1, USER1_PASSWORD)


def test_port_25_offers_starttls_and_no_auth(container: Container) -> None:
    with smtplib.SMTP("127.0.0.1", container.port(25), timeout=15) as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth")


def test_imap_login_on_993(container: Container) -> None:
    assert container.imap_login_works(USER1, USER1_PASSWORD)
    assert not container.imap_login_works(USER1, "wrong-password")


def test_mail_to_alias_on_25_arrives_in_inbox(container: Container) -> None:
    subject = f"alias-{uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"] = "sender@remote.test"
    message["To"] = ALIAS1
    message["Subject"] = subject
    message.set_content("delivered through the alias\n")
    with smtplib.SMTP("127.0.0.1", container.port(25), timeout=15) as smtp:
        smtp.ehlo("remote.test")
        smtp.send_message(message)
    headers = container.wait_for_message(USER1, USER1_PASSWORD, subject)
    assert f"Delivered-To: {USER1}".encode() in headers


def test_quota_from_dovecot_quotas_cf(container: Container) -> None:
    out = container.exec("doveadm", "quota", "get", "-u", USER1)
    storage = [line.split() for line in out.splitlines() if "STORAGE" in line]
    assert storage and storage[0][-2] == "10240", out  # 10M in KiB


def test_account_added_while_running_can_log_in(
    container: Container, config_dir: Path
) -> None:
    started_at = container.inspect("{{.State.StartedAt}}")
    assert not container.imap_login_works(USER2, USER2_PASSWORD)

    accounts = config_dir / "postfix-accounts.cf"
    with accounts.open("a") as handle:
        handle.write(f"{USER2}|{_password_hash(USER2_PASSWORD)}\n")

    deadline = time.monotonic() + CHANGE_TIMEOUT
    while not container.imap_login_works(USER2, USER2_PASSWORD):
        if time.monotonic() > deadline:
            pytest.fail(
                f"{USER2} cannot log in {CHANGE_TIMEOUT}s after it was added"
                f"{container.diagnostics()}"
            )
        time.sleep(0.5)
    with container.submission() as smtp:
        _smtp_login(smtp, USER2, USER2_PASSWORD)

    assert container.inspect("{{.State.StartedAt}}") == started_at
    assert container.inspect("{{.RestartCount}}") == "0"


def test_submission_on_587_is_dkim_signed(container: Container) -> None:
    subject = f"dkim-{uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"] = USER1
    message["To"] = USER1
    message["Subject"] = subject
    message.set_content("signed by OpenDKIM\n")
    with container.submission() as smtp:
        _smtp_login(smtp, USER1, USER1_PASSWORD)
        smtp.send_message(message)

    headers = BytesHeaderParser().parsebytes(
        container.wait_for_message(USER1, USER1_PASSWORD, subject)
    )
    signatures = headers.get_all("DKIM-Signature") or []
    assert signatures, f"no DKIM-Signature in:\n{headers}{container.diagnostics()}"
    tags = {
        key.strip(): value.strip()
        for key, dummy, value in (
            part.partition("=") for part in "".join(signatures[0].split()).split(";")
        )
        if key.strip()
    }
    assert tags.get("d") == DOMAIN
    assert tags.get("s") == DKIM_SELECTOR
