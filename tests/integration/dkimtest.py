# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DKIM test helpers: a real OpenDKIM fed the config dir as DMS feeds it, a minimal milter client, dkimpy.

How OpenDKIM gets the files here, and why
-----------------------------------------
DMS copies ``<config>/opendkim/*`` to ``/etc/opendkim/`` when the container is
created, and its ``opendkim.conf`` reads ``KeyTable /etc/opendkim/KeyTable``
(a plain file; older DMS releases used ``refile:``), ``SigningTable
refile:/etc/opendkim/SigningTable`` and ``refile:/etc/opendkim/TrustedHosts``.
The KeyTable therefore names keys by their container path
``/etc/opendkim/keys/<domain>/<selector>.private``.

The tests do the same copy into a private directory instead of ``/etc/opendkim``
(which belongs to this machine), and rewrite the ``/etc/opendkim/`` prefix in
the *copy* of the KeyTable to that directory.  That is the only change: the
module's own files are never touched, and every other byte OpenDKIM reads is
the module's.  A chroot would avoid the rewrite but needs a whole OpenDKIM
runtime inside it.  ``RequireSafeKeys false`` is set because the copy lives
under the world-writable ``/tmp``, which OpenDKIM's key-safety check rejects
(in the container the keys are in ``/etc/opendkim/keys``, mode 0700).
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import dkim

CONTAINER_ETC = '/etc/opendkim/'


def opendkim_conf(etc, algorithm='rsa-sha256', keytable_refile=False, extra=''):
    """DMS's opendkim.conf settings that matter for signing, pointed at ``etc``."""
    return (
        'Canonicalization        relaxed/simple\n'
        'ExternalIgnoreList      refile:{etc}/TrustedHosts\n'
        'InternalHosts           refile:{etc}/TrustedHosts\n'
        'KeyTable                {refile}{etc}/KeyTable\n'
        'SigningTable            refile:{etc}/SigningTable\n'
        'Mode                    sv\n'
        'SignatureAlgorithm      {algorithm}\n'
        'RemoveOldSignatures     Yes\n'
        'RequireSafeKeys         false\n'
        '{extra}'
    ).format(etc=etc, refile='refile:' if keytable_refile else '', algorithm=algorithm, extra=extra)


def copy_like_dms(config_dir, etc):
    """``cp -a <config>/opendkim/* /etc/opendkim/`` into ``etc``; the copy's KeyTable points into ``etc``."""
    shutil.copytree(os.path.join(config_dir, 'opendkim'), etc, dirs_exist_ok=True)
    keytable = os.path.join(etc, 'KeyTable')
    with open(keytable) as handle:
        text = handle.read()
    with open(keytable, 'w') as handle:
        handle.write(text.replace(CONTAINER_ETC, etc.rstrip('/') + '/'))


def config_check(conf_path):
    """``opendkim -n``: parse the configuration and open its data sets, then exit."""
    proc = subprocess.run(['opendkim', '-n', '-x', conf_path], capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


class OpenDKIM:
    """An OpenDKIM milter on a private unix socket, started and stopped by the test."""

    def __init__(self, conf_path):
        self.conf_path = conf_path
        self.dir = tempfile.mkdtemp(prefix='odk')  # short: unix socket paths are limited to 108 bytes
        self.socket = os.path.join(self.dir, 'milter.sock')
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(['opendkim', '-f', '-x', self.conf_path, '-p', 'local:' + self.socket],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                raise AssertionError('opendkim exited: %s' % self.proc.stdout.read().decode())
            if time.monotonic() > deadline:
                raise AssertionError('opendkim did not open its socket')
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def sign(self, sender, headers, body):
        return milter_message(self.socket, sender, headers, body)


# -- a minimal milter client (the MTA side of the milter protocol, version 6) ---------------

_NO = {'connect': 0x1, 'helo': 0x2, 'mail': 0x4, 'rcpt': 0x8, 'body': 0x10, 'hdrs': 0x20, 'eoh': 0x40,
       'data': 0x200}
_NR = {'hdrs': 0x80, 'connect': 0x1000, 'helo': 0x2000, 'mail': 0x4000, 'rcpt': 0x8000, 'data': 0x10000,
       'eoh': 0x40000, 'body': 0x80000}


def _packet(cmd, data=b''):
    return struct.pack('!I', len(data) + 1) + cmd + data


def _strings(*parts):
    return b''.join(part.encode() + b'\0' for part in parts)


class _Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(path)

    def _exact(self, n):
        buf = b''
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError('the milter closed the connection')
            buf += chunk
        return buf

    def recv(self):
        length = struct.unpack('!I', self._exact(4))[0]
        data = self._exact(length)
        return data[:1], data[1:]

    def send(self, cmd, data=b''):
        self.sock.sendall(_packet(cmd, data))


class MilterResult:
    def __init__(self, code, added, reply=None):
        self.code = code          # 'accept' / 'continue' (then look at added), 'tempfail', 'reject', ...
        self.added = added        # [(name, value)] headers the milter added or inserted
        self.reply = reply

    def header(self, name):
        for hname, value in self.added:
            if hname.lower() == name.lower():
                return value
        return None


_CODES = {b'a': 'accept', b'c': 'continue', b't': 'tempfail', b'r': 'reject', b'd': 'discard', b'y': 'replycode'}


def milter_message(path, sender, headers, body):
    """Pass one message from 127.0.0.1 through a milter; return what it did (MilterResult)."""
    conn = _Conn(path)
    try:
        conn.send(b'O', struct.pack('!III', 6, 0x1ff, 0))
        cmd, data = conn.recv()
        assert cmd == b'O', cmd
        dummy, dummy, proto = struct.unpack('!III', data[:12])

        def step(name, cmd, data):
            if proto & _NO.get(name, 0):
                return None
            conn.send(cmd, data)
            if proto & _NR.get(name, 0):
                return None
            code, payload = conn.recv()
            if code != b'c':
                return MilterResult(_CODES.get(code, repr(code)), [], payload.rstrip(b'\0').decode())
            return None

        conn.send(b'D', b'C' + _strings('j', 'mail.example.test', '{daemon_name}', 'smtpd'))
        steps = [('connect', b'C', _strings('localhost') + b'4' + struct.pack('!H', 40000) + _strings('127.0.0.1')),
                 ('helo', b'H', _strings('localhost'))]
        for name, cmd, data in steps:
            early = step(name, cmd, data)
            if early:
                return early
        conn.send(b'D', b'M' + _strings('i', 'QUEUEID1'))
        for name, cmd, data in [('mail', b'M', _strings('<%s>' % sender)),
                                ('rcpt', b'R', _strings('<rcpt@example.net>')),
                                ('data', b'T', b'')]:
            early = step(name, cmd, data)
            if early:
                return early
        for hname, value in headers:
            early = step('hdrs', b'L', _strings(hname, value))
            if early:
                return early
        for name, cmd, data in [('eoh', b'N', b''), ('body', b'B', body)]:
            early = step(name, cmd, data)
            if early:
                return early
        conn.send(b'E', b'')
        added = []
        while True:
            code, payload = conn.recv()
            if code == b'h':
                hname, value = payload.split(b'\0')[:2]
                added.append((hname.decode(), value.decode()))
            elif code == b'i':
                hname, value = payload[4:].split(b'\0')[:2]
                added.append((hname.decode(), value.decode()))
            elif code in (b'p', b'm'):
                continue
            else:
                return MilterResult(_CODES.get(code, repr(code)), added, payload.rstrip(b'\0').decode() or None)
    finally:
        try:
            conn.send(b'Q')
        except OSError:
            pass
        conn.sock.close()


# -- messages, signing and verifying with dkimpy ---------------------------------------------------

BODY = b'Hello from the dms.mailserver tests.\r\n'


def headers_for(sender):
    return [('From', sender), ('To', 'rcpt@example.net'), ('Subject', 'DKIM test'),
            ('Date', 'Mon, 05 Jan 2026 10:00:00 +0000'), ('Message-ID', '<t1@%s>' % sender.split('@')[1])]


def message_bytes(headers, body=BODY, signature=None):
    lines = []
    if signature is not None:
        lines.append(('DKIM-Signature: ' + signature.replace('\r\n', '\n').replace('\n', '\r\n')).encode())
    lines += [('%s: %s' % (name, value)).encode() for name, value in headers]
    return b'\r\n'.join(lines) + b'\r\n\r\n' + body


def dkimpy_verify(message, records):
    """dkimpy's verdict, DNS replaced by ``records`` ({name: TXT value}); no real DNS is asked."""
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        value = records.get(name.rstrip('.').lower())
        return value.encode() if value is not None else None
    return dkim.verify(message, dnsfunc=dnsfunc)


def dkimpy_sign(message, selector, domain, private_text):
    """Sign with dkimpy using a written private key file's text (PEM, or Rspamd's base64 Ed25519)."""
    text = private_text.strip()
    if text.startswith('-----BEGIN'):
        der = subprocess.run(['openssl', 'pkey', '-outform', 'DER'], input=text.encode(), capture_output=True,
                             check=True).stdout
        if b'\x06\x03\x2b\x65\x70' in der[:20]:  # the Ed25519 OID: the seed is the last 32 bytes of PKCS#8
            return dkim.sign(message, selector.encode(), domain.encode(), base64.b64encode(der[-32:]),
                             signature_algorithm=b'ed25519-sha256')
        return dkim.sign(message, selector.encode(), domain.encode(), text.encode())
    raw = base64.b64decode(text)  # rspamadm's form: seed (32 bytes) followed by the public key
    return dkim.sign(message, selector.encode(), domain.encode(), base64.b64encode(raw[:32]),
                     signature_algorithm=b'ed25519-sha256')


def openssl_describe(path):
    """The first line of ``openssl pkey -text``, e.g. ``Private-Key: (2048 bit, 2 primes)``."""
    proc = subprocess.run(['openssl', 'pkey', '-in', path, '-noout', '-text'], capture_output=True, text=True,
                          check=True)
    return proc.stdout.splitlines()[0]


def openssl_public_b64(path):
    """The public key as DKIM's p= publishes it, computed by openssl from the private key file."""
    der = subprocess.run(['openssl', 'pkey', '-in', path, '-pubout', '-outform', 'DER'], capture_output=True,
                         check=True).stdout
    if len(der) == 44 and b'\x06\x03\x2b\x65\x70' in der:  # Ed25519: p= is the raw 32-byte key
        der = der[-32:]
    return base64.b64encode(der).decode()


def txt_p(text):
    joined = ''.join(re.findall(r'"([^"]*)"', text))
    match = re.search(r'(?:^|;)\s*p=([^;]*)', joined)
    return ''.join(match.group(1).split()) if match else None


def unbound_conf(path, records):
    """An unbound configuration that answers TXT queries for ``records`` locally ({name: rdata})."""
    lines = ['server:']
    for name, rdata in records.items():
        zone = name.split('._domainkey.', 1)[1]
        lines.append('  local-zone: "%s." static' % zone)
        lines.append("  local-data: '%s. 300 IN TXT %s'" % (name, rdata))
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def run_testkey(conf_path):
    """``opendkim-testkey``: (passed, failed) key counts; it checks each KeyTable key against its TXT record."""
    proc = subprocess.run(['opendkim-testkey', '-x', conf_path, '-vvv'], capture_output=True, text=True,
                          check=False)
    match = re.search(r'(\d+) pass, (\d+) fail', proc.stdout + proc.stderr)
    if not match:
        raise AssertionError('opendkim-testkey said: %s %s' % (proc.stdout, proc.stderr))
    return int(match.group(1)), int(match.group(2))
