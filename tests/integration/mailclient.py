# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mail clients for tests that talk to a mail server the tests started: IMAP logins, SMTP submission, waiting
for a message.  Shared by the integration tests and the molecule verifiers (which add this directory to
``sys.path``).  Every connection goes to 127.0.0.1, where the tests publish the servers' ports."""
from __future__ import annotations

import email.message
import email.utils
import imaplib
import smtplib
import ssl
import time
import uuid

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
