# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mail clients for tests that talk to a mail server the tests started: IMAP logins, SMTP submission, waiting
for a message.  Shared by the integration tests and the molecule verifiers (which add this directory to
``sys.path``).  Every connection goes to 127.0.0.1, where the tests publish the servers' ports."""
from __future__ import annotations

import datetime
import email.message
import email.utils
import imaplib
import smtplib
import socket
import ssl
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HOST = '127.0.0.1'
# The name the clients give in EHLO: fully qualified, as DMS's Postfix wants on port 25
# (reject_non_fqdn_helo_hostname), and in a domain the tests' DNS server resolves.
HELO = 'client.outside.test'


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test servers' own self-signed certificates
    return ctx


def imap_login(port, user, password):
    """Log in over IMAPS and out again; raises imaplib.IMAP4.error when the login is refused."""
    imap = imaplib.IMAP4_SSL(HOST, port, ssl_context=tls_context(), timeout=30)
    try:
        imap.login(user, password)
    finally:
        try:
            imap.logout()
        except imaplib.IMAP4.error:
            pass


def wait_for_message(port, user, password, marker, timeout=60):
    """Poll the INBOX over IMAPS for a message whose Subject carries ``marker``; return its bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        imap = imaplib.IMAP4_SSL(HOST, port, ssl_context=tls_context(), timeout=30)
        try:
            imap.login(user, password)
            imap.select('INBOX')
            dummy, data = imap.search(None, 'SUBJECT', '"%s"' % marker)
            ids = data[0].split()
            if ids:
                dummy, msg = imap.fetch(ids[-1], '(RFC822)')
                return msg[0][1]
        finally:
            imap.logout()
        time.sleep(2)
    raise AssertionError('no message %r for %s on port %s within %s s' % (marker, user, port, timeout))


def new_message(sender, to, label):
    """A small message whose Subject is a fresh marker; returns (message, marker)."""
    marker = '%s-%s' % (label, uuid.uuid4().hex)
    msg = email.message.EmailMessage()
    msg['From'] = sender
    msg['To'] = to
    msg['Subject'] = marker
    msg['Message-ID'] = email.utils.make_msgid(domain=sender.split('@')[1])
    msg['Date'] = email.utils.formatdate()
    msg.set_content('Hello from the %s test.\n' % label)
    return msg, marker


def submit(port, user, password, msg):
    """Send ``msg`` through a submission port (STARTTLS, then AUTH as ``user``)."""
    with smtplib.SMTP(HOST, port, timeout=30, local_hostname=HELO) as smtp:
        smtp.starttls(context=tls_context())
        smtp.login(user, password)
        smtp.send_message(msg)


def send_25(port, msg):
    """Send ``msg`` to port 25 as a mail server on the Internet would: no AUTH, a fully qualified EHLO name."""
    with smtplib.SMTP(HOST, port, timeout=60, local_hostname=HELO) as smtp:
        smtp.send_message(msg)


def self_signed(directory, name, cn):
    """A new key and self-signed certificate for ``cn`` in ``directory``: (key path, cert path, serial number)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / ('%s-key.pem' % name), directory / ('%s-cert.pem' % name)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, cert.serial_number


def served_serial(host, port, implicit=True):
    """Serial number of the certificate a server presents: implicit TLS, or SMTP with STARTTLS."""
    if implicit:
        with socket.create_connection((host, port), timeout=15) as sock:
            with tls_context().wrap_socket(sock) as tls:
                der = tls.getpeercert(binary_form=True)
    else:
        with smtplib.SMTP(host, port, timeout=15, local_hostname=HELO) as smtp:
            smtp.starttls(context=tls_context())
            der = smtp.sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number
