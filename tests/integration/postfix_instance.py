# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private, real Postfix mail system fed from a DMS config dir the way DMS feeds its own.

Why a running Postfix and not ``postmap -q``: ``postmap -q`` asks one table for
one key.  What decides where mail for ``a@example.com`` goes is Postfix's
virtual alias *expansion* in cleanup(8): each address is looked up as
``user@domain`` in every table of ``virtual_alias_maps`` (texthash, then pcre),
then as ``@domain``; results are expanded again, recursively, until an address
maps to itself; then trivial-rewrite(8) classifies the result by
``virtual_mailbox_domains`` and the delivery agent finds the mailbox through
``virtual_mailbox_maps``.  Re-implementing that order in a test would prove
nothing about Postfix.  ``sendmail -bv`` exercises it too, but it also needs a
running mail system and only reports; delivering real messages shows the
outcome itself.

So this starts Debian's Postfix (``postfix -c <private dir> start``, its own
queue, data and mailbox directories, SMTP on a free loopback port), builds its
tables from the config dir as DMS's startup and change detector do (copies of
``postfix-virtual.cf`` and ``postfix-regexp.cf``; ``vmailbox`` = ``LOGIN
DOMAIN/USER/`` per account; ``vhost`` = the domains of accounts and alias keys),
reloads it as DMS does after a change, sends mail over SMTP and reports which
maildir each message landed in.  The one deliberate difference: DMS hands mail
to Dovecot over LMTP, here Postfix's own virtual(8) agent delivers to the
maildir that ``virtual_mailbox_maps`` names for the address, which is exactly
the resolution under test.

Needs root (the master daemon runs as root and drops to the ``postfix`` user).
"""
from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

MASTER_CF = '''\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
'''


def usable():
    """None when a private Postfix can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return 'a private Postfix master needs root'
    if not shutil.which('postfix'):
        return 'Postfix is not installed'
    try:
        pwd.getpwnam('postfix')
    except KeyError:
        return 'there is no postfix user'
    return None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _valid_lines(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_text().replace('\r', '').split('\n'):
        stripped = line.strip()
        if stripped and not stripped.startswith('#'):
            out.append(line)
    return out


class PostfixInstance:
    def __init__(self):
        # Not under pytest's tmp_path: its 0700 parents would keep the postfix and mailbox users out.
        self.root = Path(tempfile.mkdtemp(prefix='dms-postfix-'))
        os.chmod(self.root, 0o755)
        self.etc = self.root / 'etc'
        self.maps = self.root / 'maps'
        self.mail = self.root / 'mail'
        self.log = self.root / 'maillog'
        for directory in (self.etc, self.maps, self.mail, self.root / 'spool', self.root / 'data'):
            directory.mkdir()
        nobody = pwd.getpwnam('nobody')
        self.vmail_uid, self.vmail_gid = nobody.pw_uid, nobody.pw_gid
        os.chown(self.mail, self.vmail_uid, self.vmail_gid)
        postfix = pwd.getpwnam('postfix')
        os.chown(self.root / 'data', postfix.pw_uid, postfix.pw_gid)
        self.port = _free_port()
        (self.etc / 'master.cf').write_text(MASTER_CF.format(port='127.0.0.1:%d' % self.port))
        self.running = False

    def _postfix(self, *args):
        proc = subprocess.run(['postfix', '-c', str(self.etc)] + list(args), capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise AssertionError('postfix %s failed: %s%s\n%s' % (' '.join(args), proc.stdout, proc.stderr,
                                                                  self.log_tail()))

    def log_tail(self, lines=30):
        if not self.log.exists():
            return ''
        return '\n'.join(self.log.read_text().splitlines()[-lines:])

    def apply(self, config_dir):
        """Build Postfix's tables from a DMS config dir (as DMS does) and (re)load them."""
        config_dir = Path(config_dir)
        accounts = [line.split('|', 1)[0] for line in _valid_lines(config_dir / 'postfix-accounts.cf')]
        virtual_keys = [line.split()[0] for line in _valid_lines(config_dir / 'postfix-virtual.cf')]
        vmailbox = []
        domains = set()
        for login in accounts:
            user, domain = login.split('@', 1)
            vmailbox.append('%s %s/%s/\n' % (login, domain, user))
            domains.add(domain)
        domains.update(key.split('@', 1)[1] for key in virtual_keys if '@' in key)
        (self.maps / 'vmailbox').write_text(''.join(vmailbox))
        (self.maps / 'vhost').write_text(''.join('%s\n' % d for d in sorted(domains)))
        alias_maps = []
        for name, copy, kind in (('postfix-virtual.cf', 'virtual', 'texthash'),
                                 ('postfix-regexp.cf', 'regexp', 'pcre')):
            source = config_dir / name
            target = self.maps / copy
            if source.exists():
                shutil.copyfile(source, target)
                os.chmod(target, 0o644)
                alias_maps.append('%s:%s' % (kind, target))
            elif target.exists():
                target.unlink()
        (self.etc / 'main.cf').write_text('\n'.join([
            'compatibility_level = 3.6',
            'queue_directory = %s' % (self.root / 'spool'),
            'data_directory = %s' % (self.root / 'data'),
            'maillog_file = %s' % self.log,
            'maillog_file_prefixes = %s' % self.root,
            'myhostname = mail.dms-test.invalid',
            'mydomain = dms-test.invalid',
            'mydestination =',
            'inet_interfaces = 127.0.0.1',
            'inet_protocols = ipv4',
            'mynetworks = 127.0.0.0/8',
            'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
            'alias_maps =',
            'alias_database =',
            'relayhost =',
            'default_transport = error:this test delivers nothing outside its own domains',
            'biff = no',
            # The four lines that matter, in DMS's form (target/postfix/main.cf, helpers/aliases.sh):
            'virtual_alias_maps = %s' % ' '.join(alias_maps),
            'virtual_mailbox_domains = %s' % (self.maps / 'vhost'),
            'virtual_mailbox_maps = texthash:%s' % (self.maps / 'vmailbox'),
            'virtual_mailbox_base = %s' % self.mail,
            'virtual_uid_maps = static:%d' % self.vmail_uid,
            'virtual_gid_maps = static:%d' % self.vmail_gid,
            '',
        ]))
        if self.running:
            self._postfix('reload')
        else:
            self._postfix('start')
            self.running = True
        self._wait_for_smtp()

    def _wait_for_smtp(self, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError('Postfix does not listen on port %d\n%s' % (self.port, self.log_tail()))
                time.sleep(0.1)

    def send(self, recipient):
        """Send one message over SMTP; returns its token, or raises SMTPRecipientsRefused."""
        token = uuid.uuid4().hex
        msg = EmailMessage()
        msg['From'] = 'sender@dms-test.invalid'
        msg['To'] = recipient
        msg['Subject'] = 'dms-test %s' % token
        msg.set_content('to %s\n' % recipient)
        with smtplib.SMTP('127.0.0.1', self.port, timeout=30) as smtp:
            smtp.send_message(msg, from_addr='sender@dms-test.invalid', to_addrs=[recipient])
        return token

    def mailboxes_with(self, token, expected_count=1, timeout=20):
        """The maildirs (``domain/user``) holding the message with ``token``, once delivered."""
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for path in self.mail.rglob('*'):
                if path.is_file() and path.parent.name in ('new', 'cur') and token in path.read_text(errors='replace'):
                    found.append(str(path.parent.parent.relative_to(self.mail)))
            if len(found) >= expected_count or time.monotonic() > deadline:
                return sorted(found)
            time.sleep(0.1)

    def deliver(self, recipient):
        """Where mail for ``recipient`` ends up: the list of maildirs, or the SMTP rejection ``(code, text)``."""
        try:
            token = self.send(recipient)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[recipient]
            return (code, text.decode(errors='replace'))
        found = self.mailboxes_with(token)
        if not found:
            raise AssertionError('mail for %s was not delivered anywhere\n%s' % (recipient, self.log_tail()))
        return found

    def stop(self):
        if self.running:
            pid_file = self.root / 'spool' / 'pid' / 'master.pid'
            pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
            subprocess.run(['postfix', '-c', str(self.etc), 'stop'], capture_output=True, check=False)
            deadline = time.monotonic() + 10
            while pid is not None and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)
