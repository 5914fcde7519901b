# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile input: a table of cases across every module -- separators and line breaks injected into values,
overlong values, Unicode look-alikes, path traversal in domains and selectors, and config files (or directories)
that are symlinks pointing outside config_dir.

Each case runs against a config dir of its own (seeded with a file of every kind), all of them as tasks of two
playbooks (run at once) with ignore_errors.  A case either fails cleanly -- a message naming the field and the
problem, no traceback, the config dir byte-identical (symlinks included, compared without following them) and
whatever a symlink points to outside byte-identical too -- or it is one of the normalisations docs/reliability.md
documents, whose exact result is checked.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dmstest import run_play
from reltest import note, task, tree, write_files

from ansible_collections.dms.mailserver.plugins.module_utils._dkim import generate_key, pem_pkcs8

HASH = '{SHA512-CRYPT}$6$abcdefghijklmnop$' + 'A' * 86
CYRILLIC_A = '\u0430'        # looks like "a"
FULLWIDTH_AT = '\uff20'      # looks like "@"
ZERO_WIDTH = '\u200b'
RTL_OVERRIDE = '\u202e'
GREEK_O = '\u03bf'           # looks like "o"


def _seed(key_pem):
    return {
        'postfix-accounts.cf': '# accounts\nalice@example.com|%s\n' % HASH,
        'dovecot-masters.cf': '# masters\nadmin|%s\n' % HASH,
        'dovecot-quotas.cf': 'alice@example.com:1G\n',
        'postfix-send-access.cf': 'alice@example.com \t\t REJECT\n',
        'postfix-receive-access.cf': 'alice@example.com \t\t REJECT\n',
        'postfix-virtual.cf': 'info@example.com alice@example.com\n',
        'postfix-regexp.cf': '/^sales-.*@example\\.com$/ alice@example.com\n',
        'postfix-relaymap.cf': '@example.com [smtp.example.net]:587\n',
        'postfix-sasl-password.cf': '@example.com user:Seed-relay-pw\n',
        'opendkim/KeyTable': 'mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/mail.private\n',
        'opendkim/SigningTable': '*@example.com mail._domainkey.example.com\n',
        'opendkim/TrustedHosts': '127.0.0.1\nlocalhost\n',
        'opendkim/keys/example.com/mail.private': key_pem,
        'rspamd/override.d/dkim_signing.conf': '# kept\n',
        'postfix-main.cf': '# by hand\nsmtpd_banner = $myhostname ESMTP\n',
        'postfix-master.cf': 'smtp/inet/postscreen_upstream_proxy_protocol=haproxy\n',
        'dovecot.cf': 'mail_max_userip_connections = 20\nservice imap-login {\n  inet_listener imap {\n  }\n}\n',
        'user-patches.sh': '#!/bin/bash\necho patched\n',
        'rspamd/custom-commands.conf': 'disable-module chartable\n',
        'rspamd/override.d/actions.conf': 'reject = 15;\n',
        'alice@example.com.dovecot.sieve': 'require "fileinto";\nfileinto "Seed";\n',
        'fetchmail.cf': "# fetches\npoll 'pop.example.net' proto pop3 user 'seed' pass 'Seed-fetch-pw' is "
                        "'alice@example.com' here keep ssl\n",
        'getmail/seed.cf': '[retriever]\ntype = SimplePOP3SSLRetriever\nserver = pop.example.net\nusername = gseed\n'
                           'password = Seed-getmail-pw\n',
    }


def fail(field, problem):
    """The case must fail; the message must start with ``field`` and match ``problem`` (a regexp)."""
    return ('fail', field, problem)


def account(**args):
    return ('dms_account', args)


def alias(**args):
    return ('dms_alias', args)


def relay(**args):
    return ('dms_relay', args)


def dkim(**args):
    return ('dms_dkim', args)


def config(**args):
    return ('dms_config', args)


def sieve(**args):
    # validate=always: the sievec cases must compile on the host (hack/test.sh installs dovecot-sieve).
    return ('dms_sieve', dict(dict(validate='always'), **args))


def info(**args):
    return ('dms_info', args)


def master(**args):
    return ('dms_dovecot_master', args)


def fetch(**args):
    return ('dms_fetchmail', args)


RECEIVE_ONLY = 'permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination'


NEW = {'password': 'Hostile-pw-1'}
# Passwords long enough that Ansible's no_log masking of them does not garble the messages checked below.
RELAY = {'host': 'smtp.example.net', 'username': 'u', 'password': 'Hostile-relay-pw'}
PW = 'Hostile-relay-pw'


def merged(base, **changes):
    """``base`` with ``changes``, as a new dict."""
    out = dict(base)
    out.update(changes)
    return out


FETCH = {'server': 'pop.example.net', 'protocol': 'pop3', 'username': 'u', 'password': 'Hostile-fetch-pw',
         'target': 'alice@example.com'}

# (id, (module, args), expectation)
INPUT_CASES = [
    # dms_info: compare_to entries are validated as their modules validate them, named under compare_to
    ('info-compare-newline-injection', info(compare_to={'accounts': [
        {'address': 'x@example.com\nroot@example.com', 'password': 'Hostile-pw-1'}]}),
     fail(r'compare_to\.accounts\[0\]\.address', 'line break')),
    ('info-compare-bad-regexp', info(compare_to={'aliases': [
        {'alias': '/(/', 'type': 'regexp', 'recipients': ['alice@example.com']}]}),
     fail(r'compare_to\.aliases\[0\]\.alias', 'compile')),
    ('info-compare-traversal-dkim', info(compare_to={'dkim': [{'domain': '../../etc'}]}),
     fail(r'compare_to\.dkim\[0\]\.domain', '')),
    # dms_account: separators, line breaks, overlong, look-alikes, traversal
    ('account-pipe', account(address='us|er@example.com', **NEW), fail('address', r"'\|'")),
    ('account-colon', account(address='us:er@example.com', **NEW), fail('address', r"':'")),
    ('account-comma', account(address='a,b@example.com', **NEW), fail('address', r"','")),
    ('account-newline-injection', account(address='x@example.com\nroot@example.com|' + HASH, **NEW),
     fail('address', 'line break')),
    ('account-cr', account(address='x@example.com\r', **NEW), fail('address', 'line break')),
    ('account-nul', account(address='x\x00@example.com', **NEW), fail('address', 'control character')),
    ('account-tab', account(address='x\t@example.com', **NEW), fail('address', 'control character')),
    ('account-space', account(address='x y@example.com', **NEW), fail('address', 'white space')),
    ('account-comment', account(address='#x@example.com', **NEW), fail('address', 'comment')),
    ('account-long-local', account(address='x' * 65 + '@example.com', **NEW), fail('address', '64')),
    ('account-long-address', account(address='x@' + '.'.join(c * 63 for c in 'abcd') + '.com', **NEW),
     fail('address', 'longer than 254')),
    ('account-long-label', account(address='x@' + 'a' * 64 + '.com', **NEW), fail('address', '63')),
    ('account-cyrillic-domain', account(address='x@ex%smple.com' % CYRILLIC_A, **NEW), fail('address', 'non-ASCII')),
    ('account-fullwidth-at', account(address='x%sexample.com' % FULLWIDTH_AT, **NEW), fail('address', 'non-ASCII')),
    ('account-zero-width', account(address='x%s@example.com' % ZERO_WIDTH, **NEW), fail('address', 'non-ASCII')),
    ('account-rtl-override', account(address='x%s@example.com' % RTL_OVERRIDE, **NEW), fail('address', 'non-ASCII')),
    ('account-traversal-local', account(address='../../etc@example.com', **NEW), fail('address', 'contains')),
    ('account-traversal-domain', account(address='x@../../etc', **NEW), fail('address', 'label')),
    ('account-slash-domain', account(address='x@example.com/../x', **NEW), fail('address', 'label')),
    ('account-password-newline', account(address='x@example.com', password='pw\nroot@example.com|' + HASH),
     fail('password', 'line break')),
    ('account-password-nul', account(address='x@example.com', password='pw\x00'), fail('password', 'NUL')),
    # BLF-CRYPT (bcrypt) uses only 72 bytes of a password: one byte more is refused, counted in UTF-8.
    ('account-blf-73-bytes', account(address='x@example.com', password='Hostile-' + 'h' * 65, scheme='BLF-CRYPT'),
     fail('password', 'is 73 bytes long in UTF-8; BLF-CRYPT')),
    ('account-blf-utf8-74-bytes', account(accounts=[dict(address='x@example.com', password='\u00fc' * 37,
                                                         scheme='BLF-CRYPT')]),
     fail(r'accounts\[0\]\.password', 'is 74 bytes long in UTF-8')),
    ('account-hash-pipe', account(address='x@example.com', password_hash=HASH + '|extra'),
     fail('password_hash', 'well-formed')),
    ('account-hash-newline', account(address='x@example.com', password_hash=HASH + '\nx@example.com|' + HASH),
     fail('password_hash', 'well-formed')),
    ('account-hash-no-scheme', account(address='x@example.com', password_hash='$6$abc$def'),
     fail('password_hash', 'scheme prefix')),
    ('account-quota-newline', account(address='alice@example.com', quota='1G\nbob@example.com:0'),
     fail('quota', 'line break')),
    ('account-quota-lowercase', account(address='alice@example.com', quota='1g'), fail('quota', 'not a valid quota')),
    ('account-quota-long', account(address='alice@example.com', quota='1' * 40 + 'M'), fail('quota', 'longer')),
    ('account-restrict-newline', account(address='alice@example.com', restrict=['send\n']),
     fail('restrict', 'not a restriction')),
    ('account-duplicate-case', account(accounts=[dict(address='bob@example.com', **NEW),
                                                 dict(address='BOB@example.com', **NEW)]),
     fail(r'accounts\[1\]\.address', 'listed twice')),
    ('account-bulk-item', account(accounts=[dict(address='ok@example.com', **NEW),
                                            dict(address='bad|x@example.com', **NEW)]),
     fail(r'accounts\[1\]\.address', r"'\|'")),
    # dms_alias
    ('alias-comma-key', alias(alias='a,b@example.com', recipients=['alice@example.com']), fail('alias', "','")),
    ('alias-recipient-comma-injection', alias(alias='new@example.com', recipients=['alice@example.com,evil@evil.com']),
     fail(r'recipients\[0\]', "','")),
    ('alias-recipient-space-injection', alias(alias='new@example.com', recipients=['alice@example.com evil@evil.com']),
     fail(r'recipients\[0\]', 'white space')),
    ('alias-recipient-newline', alias(alias='new@example.com', recipients=['alice@example.com\n@example.com x@evil.com']),
     fail(r'recipients\[0\]', 'line break')),
    ('alias-key-newline', alias(alias='new@example.com\n@example.com', recipients=['alice@example.com']),
     fail('alias', 'line break')),
    ('alias-catchall-space', alias(alias='@exa mple.com', recipients=['alice@example.com']),
     fail('alias', 'white space')),
    ('alias-catchall-traversal', alias(alias='@../../etc', recipients=['alice@example.com']), fail('alias', 'label')),
    ('alias-cyrillic', alias(alias='inf%s@example.com' % GREEK_O, recipients=['alice@example.com']),
     fail('alias', 'non-ASCII')),
    ('alias-recipient-fullwidth', alias(alias='new@example.com', recipients=['alice%sexample.com' % FULLWIDTH_AT]),
     fail(r'recipients\[0\]', 'non-ASCII')),
    ('alias-long', alias(alias='x' * 65 + '@example.com', recipients=['alice@example.com']), fail('alias', '64')),
    ('alias-comment', alias(alias='#x@example.com', recipients=['alice@example.com']), fail('alias', 'comment')),
    ('alias-regexp-as-virtual', alias(alias='/^x@example\\.com$/', recipients=['alice@example.com']),
     fail('alias', 'type=regexp')),
    ('alias-regexp-newline', alias(alias='/^x$/\n/^.*$/', type='regexp', recipients=['alice@example.com']),
     fail('alias', 'line break')),
    ('alias-regexp-unterminated', alias(alias='/^x@example\\.com$', type='regexp', recipients=['alice@example.com']),
     fail('alias', 'not a valid regexp alias')),
    ('alias-regexp-recipient-newline', alias(alias='/^y@example\\.com$/', type='regexp',
                                             recipients=['alice@example.com\n/^.*$/ evil@evil.com']),
     fail(r'recipients\[0\]', 'line break')),
    ('alias-regexp-recipient-dollar', alias(alias='/^y@example\\.com$/', type='regexp', recipients=['$x@example.com']),
     fail(r'recipients\[0\]', 'not a substitution')),
    ('alias-empty-recipients', alias(alias='new@example.com', recipients=[]), fail('recipients', 'at least one')),
    # dms_relay
    ('relay-domain-space-injection', relay(domain='example.org [evil.com]:25', **RELAY), fail('domain', 'white space')),
    ('relay-domain-newline', relay(domain='example.org\n@evil.com', **RELAY), fail('domain', 'line break')),
    ('relay-domain-traversal', relay(domain='../../etc', **RELAY), fail('domain', 'label')),
    ('relay-domain-cyrillic', relay(domain='ex%smple.org' % CYRILLIC_A, **RELAY), fail('domain', 'non-ASCII')),
    ('relay-domain-long', relay(domain='a' * 250 + '.org', **RELAY), fail('domain', 'longer than 253')),
    ('relay-domain-alone', relay(domain='example.com'), fail('domain', 'given alone, which asks for nothing: expected host')),
    ('relay-host-bracket-injection', relay(domain='example.org', host='evil.com]:25 [x', username='u', password=PW),
     fail('host', '')),
    ('relay-host-brackets', relay(domain='example.org', host='[smtp.example.net]', username='u', password=PW),
     fail('host', 'without brackets')),
    ('relay-host-port', relay(domain='example.org', host='smtp.example.net:587', username='u', password=PW),
     fail('host', 'port option')),
    ('relay-host-leading-zero', relay(domain='example.org', host='010.0.0.1', username='u', password=PW),
     fail('host', 'IPv4')),
    ('relay-host-long', relay(domain='example.org', host='a' * 300, username='u', password=PW),
     fail('host', 'longer')),
    ('relay-port-zero', relay(domain='example.org', host='smtp.example.net', port=0), fail('port', '1 to 65535')),
    ('relay-port-huge', relay(domain='example.org', host='smtp.example.net', port=70000), fail('port', '1 to 65535')),
    ('relay-port-text', relay(domain='example.org', host='smtp.example.net', port='25 x'), fail('port', '1 to 65535')),
    ('relay-username-colon', relay(domain='example.org', host='smtp.example.net', username='u:x', password=PW),
     fail('username', 'contains ":"')),
    ('relay-username-newline', relay(domain='example.org', host='smtp.example.net', username='u\n@evil.com x',
                                     password=PW), fail('username', 'line break')),
    ('relay-username-nbsp', relay(domain='example.org', host='smtp.example.net', username='\u00a0u', password=PW),
     fail('username', 'white space')),
    ('relay-username-long', relay(domain='example.org', host='smtp.example.net', username='u' * 300, password=PW),
     fail('username', 'longer')),
    ('relay-password-newline-injection', relay(domain='example.org', host='smtp.example.net', username='u',
                                               password='p\n@evil.com attacker:pw'), fail('password', 'line break')),
    ('relay-password-space', relay(domain='example.org', host='smtp.example.net', username='u', password='p '),
     fail('password', 'white space')),
    ('relay-password-nbsp', relay(domain='example.org', host='smtp.example.net', username='u', password='p\u00a0'),
     fail('password', 'white space')),
    ('relay-password-control', relay(domain='example.org', host='smtp.example.net', username='u', password='p\x1b[2J'),
     fail('password', 'control character')),
    ('relay-password-long', relay(domain='example.org', host='smtp.example.net', username='u', password='p' * 2000),
     fail('password', 'longer than 1024')),
    # dms_fetchmail: injection into fetchmail.cf statements and getmail files, bad protocol/port, unknown target
    ('fetch-server-newline', fetch(**merged(FETCH, server='pop.example.net\npoll evil.example user x')),
     fail('server', 'line break')),
    ('fetch-server-quote-injection', fetch(**merged(FETCH, server="pop.example.net' user 'x")),
     fail('server', 'white space')),
    ('fetch-server-brackets', fetch(**merged(FETCH, server='[pop.example.net]')), fail('server', 'without brackets')),
    ('fetch-server-traversal', fetch(**merged(FETCH, server='../../etc')), fail('server', 'label')),
    ('fetch-username-newline', fetch(**merged(FETCH, username="u\npoll 'evil.example' user 'x' is 'root'")),
     fail('username', 'line break')),
    ('fetch-password-newline-injection', fetch(**merged(FETCH, password="p'\npoll 'evil.example' user 'x'")),
     fail('password', 'line break')),
    ('fetch-password-control', fetch(**merged(FETCH, password='Hostile-fetch-pw\x1b[2J')),
     fail('password', 'control character')),
    ('fetch-password-nbsp', fetch(**merged(FETCH, password='Hostile-fetch-pw\u00a0')), fail('password', 'white space')),
    ('fetch-password-long', fetch(**merged(FETCH, password='p' * 2000)), fail('password', 'longer than 1024')),
    ('fetch-protocol-bad', fetch(**merged(FETCH, protocol='smtp')), fail('value of protocol', 'pop3, imap')),
    ('fetch-port-zero', fetch(**merged(FETCH, port=0)), fail('port', '1 to 65535')),
    ('fetch-port-huge', fetch(**merged(FETCH, port=70000)), fail('port', '1 to 65535')),
    ('fetch-target-unknown', fetch(**merged(FETCH, target='carol@example.com')),
     fail('target', 'not an account in postfix-accounts.cf')),
    ('fetch-target-injection', fetch(**merged(FETCH, target="alice@example.com' here user 'x")),
     fail('target', 'white space')),
    ('fetch-folder-newline', fetch(**merged(FETCH, protocol='imap', folders=['INBOX\npoll evil.example'])),
     fail(r'folders\[0\]', 'line break')),
    ('fetch-folders-pop3', fetch(**merged(FETCH, folders=['INBOX'])), fail('folders', 'needs protocol=imap')),
    ('fetch-getmail-keep-false', fetch(**merged(FETCH, fetcher='getmail', keep=False)),
     fail('keep', 'getmail refuses a second')),
    ('fetch-getmail-cleartext', fetch(**merged(FETCH, fetcher='getmail', ssl=False)),
     fail('ssl', 'without any TLS')),
    ('fetch-bulk-duplicate', fetch(fetches=[dict(FETCH), merged(FETCH, server='POP.example.net')]),
     fail(r'fetches\[1\]\.username', 'listed twice')),
    ('fetch-exclusive-single', fetch(exclusive=True, **FETCH), fail('exclusive', 'needs the fetches list')),
    ('fetch-new-without-password', fetch(**merged(FETCH, password=None)), fail('password', 'required to create')),
    # dms_dkim
    ('dkim-domain-traversal', dkim(domain='../../etc'), fail('domain', 'label')),
    ('dkim-domain-slash', dkim(domain='example.org/../../x'), fail('domain', 'label')),
    ('dkim-domain-newline', dkim(domain='example.org\n*@evil.com'), fail('domain', 'line break')),
    ('dkim-domain-tab', dkim(domain='example.org\t*@evil.com'), fail('domain', 'control character')),
    ('dkim-domain-nul', dkim(domain='example.org\x00'), fail('domain', 'control character')),
    ('dkim-domain-cyrillic', dkim(domain='ex%smple.org' % CYRILLIC_A), fail('domain', 'non-ASCII')),
    ('dkim-domains-item-traversal', dkim(domains=['example.org', '..']), fail(r'domains\[1\]', 'label')),
    ('dkim-selector-traversal', dkim(domain='example.org', selector='../x'), fail('selector', 'empty label')),
    ('dkim-selector-dotdot', dkim(domain='example.org', selector='..'), fail('selector', 'empty label')),
    ('dkim-selector-slash', dkim(domain='example.org', selector='a/b'), fail('selector', 'letters, digits')),
    ('dkim-selector-newline', dkim(domain='example.org', selector='mail\nx'), fail('selector', 'line break')),
    ('dkim-selector-space', dkim(domain='example.org', selector='mail x'), fail('selector', 'white space')),
    ('dkim-selector-greek', dkim(domain='example.org', selector='mail%s' % GREEK_O), fail('selector', 'non-ASCII')),
    ('dkim-selector-long', dkim(domain='example.org', selector='s' * 64), fail('selector', 'longer than 63')),
    ('dkim-rspamd-selector-traversal', dkim(domain='example.org', selector='../../x', backend='rspamd'),
     fail('selector', 'empty label')),
    ('dkim-rspamd-domain-traversal', dkim(domain='../x', backend='rspamd'), fail('domain', 'label')),
    # dms_dovecot_master: separators of both files and of the login, line breaks, look-alikes, account names
    ('master-pipe', master(name='ad|min', **NEW), fail('name', r"'\|', the column separator")),
    ('master-colon', master(name='ad:min', **NEW), fail('name', r"':', the column separator of Dovecot's masterdb")),
    ('master-login-separator', master(name='ad*min', **NEW), fail('name', r"'\*', the separator of master logins")),
    ('master-newline-injection', master(name='x\nroot|' + HASH, **NEW), fail('name', 'line break')),
    ('master-cr', master(name='x\r', **NEW), fail('name', 'line break')),
    ('master-nul', master(name='x\x00', **NEW), fail('name', 'control character')),
    ('master-space', master(name='ad min', **NEW), fail('name', 'white space')),
    ('master-comment', master(name='#admin', **NEW), fail('name', 'comment')),
    ('master-empty', master(name='', **NEW), fail('name', 'must not be empty')),
    ('master-cyrillic', master(name='%sdmin' % CYRILLIC_A, **NEW), fail('name', 'non-ASCII')),
    ('master-zero-width', master(name='ad%smin' % ZERO_WIDTH, **NEW), fail('name', 'non-ASCII')),
    ('master-long', master(name='m' * 255, **NEW), fail('name', 'longer than 254')),
    ('master-account-collision', master(name='Alice@Example.com', **NEW), fail('name', 'is an account')),
    ('master-bad-scheme', master(name='x', scheme='PLAIN-MD5', **NEW), fail('value of scheme', 'must be one of')),
    ('master-hash-weak-scheme', master(name='x', password_hash='{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99'),
     fail('password_hash', 'not one this collection can check')),
    ('master-hash-pipe', master(name='x', password_hash=HASH + '|extra'), fail('password_hash', 'well-formed')),
    ('master-password-newline', master(name='x', password='pw\nroot|' + HASH), fail('password', 'line break')),
    ('master-listed-twice', master(masters=[dict(name='x', **NEW), dict(name='X', **NEW)]),
     fail(r'masters\[1\]\.name', 'listed twice')),
    ('master-absent-with-password', master(name='admin', state='absent', **NEW), fail('password', 'no meaning')),
    ('master-exclusive-without-list', master(name='admin', exclusive=True, **NEW), fail('exclusive', 'masters list')),
    ('master-new-without-password', master(name='nobody'), fail('name', 'does not exist yet')),
    # dms_config: newline and brace injection, restriction keys, bad service lines, traversal, bad syntax
    ('config-main-key-newline', config(file='postfix-main.cf', settings={'a\nsmtpd_sender_restrictions': 'x'}),
     fail('settings', 'line break')),
    ('config-main-value-newline', config(file='postfix-main.cf', settings={
        'smtpd_banner': 'x\nsmtpd_recipient_restrictions = permit'}), fail(r'settings\.smtpd_banner', 'line break')),
    ('config-main-value-cr', config(file='postfix-main.cf', settings={'smtpd_banner': 'x\ry'}),
     fail(r'settings\.smtpd_banner', 'line break')),
    ('config-main-value-nul', config(file='postfix-main.cf', settings={'smtpd_banner': 'x\x00'}),
     fail(r'settings\.smtpd_banner', 'NUL')),
    ('config-main-value-escape', config(file='postfix-main.cf', settings={'smtpd_banner': 'x\x1b[31m'}),
     fail(r'settings\.smtpd_banner', 'control character')),
    ('config-main-key-space', config(file='postfix-main.cf', settings={'smtpd banner': 'x'}),
     fail(r'settings\.smtpd banner', 'not a Postfix parameter name')),
    ('config-main-key-equals', config(file='postfix-main.cf', settings={'a=b': 'x'}),
     fail(r'settings\.a=b', 'not a Postfix parameter name')),
    ('config-main-recipient-restrictions', config(file='postfix-main.cf', settings={
        'smtpd_recipient_restrictions': RECEIVE_ONLY}), fail(r'settings\.smtpd_recipient_restrictions', 'refused')),
    ('config-main-sender-restrictions', config(file='postfix-main.cf', settings={
        'smtpd_sender_restrictions': 'permit_mynetworks, reject'}),
     fail(r'settings\.smtpd_sender_restrictions', 'refused')),
    ('config-main-dms-sender-restrictions', config(file='postfix-main.cf', settings={
        'dms_smtpd_sender_restrictions': 'permit_mynetworks'}), fail(r'settings\.dms_smtpd_sender_restrictions',
                                                                     'refused')),
    ('config-main-string-boolean', config(file='postfix-main.cf', settings={'smtputf8_enable': 'False'}),
     fail(r'settings\.smtputf8_enable', 'not a Postfix boolean')),
    ('config-main-nested-list', config(file='postfix-main.cf', settings={'mynetworks': [['127.0.0.0/8']]}),
     fail(r'settings\.mynetworks\[0\]', 'list item')),
    ('config-main-with-services', config(file='postfix-main.cf', services={'smtp/inet/x': 'y'}),
     fail('services', 'no meaning for postfix-main.cf')),
    ('config-master-bad-type', config(file='postfix-master.cf', services={'smtp/tcp/x': 'y'}),
     fail(r'services\.smtp/tcp/x', 'not a service/type/parameter')),
    ('config-master-missing-field', config(file='postfix-master.cf', services={'smtp/inet': 'y'}),
     fail(r'services\.smtp/inet', 'not a service/type/parameter')),
    ('config-master-value-space', config(file='postfix-master.cf', services={
        'submission/inet/smtpd_client_restrictions': 'permit_sasl_authenticated, reject'}),
     fail(r'services\.submission/inet/smtpd_client_restrictions', 'no white space')),
    ('config-master-value-newline', config(file='postfix-master.cf', services={'smtp/inet/x': 'y\nsmtp/inet/z=1'}),
     fail(r'services\.smtp/inet/x', 'line break')),
    ('config-master-unknown-service', config(file='postfix-master.cf', services={'nosuch/inet/x': 'y'}),
     fail(r'services\.nosuch/inet/x', 'no service nosuch/inet')),
    ('config-master-restriction', config(file='postfix-master.cf', services={
        'submission/inet/smtpd_sender_restrictions': 'permit_sasl_authenticated,reject'}),
     fail(r'services\.submission/inet/smtpd_sender_restrictions', 'refused')),
    ('config-dovecot-brace-value', config(file='dovecot.cf', release_line='16', settings={
        'login_greeting': 'x } service evil {'}), fail(r'settings\.login_greeting', 'section start or end')),
    ('config-dovecot-brace-name', config(file='dovecot.cf', release_line='16', sections={
        'service imap-login': {'x } service evil { y': 1}}), fail(r'sections\.service imap-login', 'setting name')),
    ('config-dovecot-brace-header', config(file='dovecot.cf', release_line='16', sections={
        'service } evil {': {'a': 1}}), fail(r'sections\.service \} evil', 'may only contain')),
    ('config-dovecot-value-newline', config(file='dovecot.cf', release_line='15.1', sections={
        'service imap-login': {'inet_listener imap': {'port': '143\n}\nservice evil {'}}}),
     fail(r'sections\.service imap-login', 'line break')),
    ('config-dovecot-23-key-on-16', config(file='dovecot.cf', release_line='16', settings={
        'disable_plaintext_auth': 'no'}), fail(r'settings\.disable_plaintext_auth', 'Dovecot 2.4')),
    ('config-dovecot-unknown-24-key', config(file='dovecot.cf', release_line='16', settings={
        'mail_locaton_path': 'x'}), fail(r'settings\.mail_locaton_path', 'not a setting of Dovecot 2.4')),
    ('config-dovecot-plugin-on-16', config(file='dovecot.cf', release_line='16', sections={
        'plugin': {'quota_grace': '10%%'}}), fail(r'sections\.plugin', 'no plugin section')),
    ('config-dovecot-no-line', config(file='dovecot.cf', settings={'mail_max_userip_connections': 50}),
     fail('release_line', 'required')),
    ('config-override-traversal', config(file='rspamd/override.d/../../../etc/cron.d/x.conf', content='x = 1;'),
     fail('file', r'no "/" and no "\.\."')),
    ('config-override-absolute', config(file='/etc/passwd', content='root::0:0::/:/bin/sh'),
     fail('file', 'not a DMS config-volume file')),
    ('config-override-hidden', config(file='rspamd/override.d/.x.conf', content='x = 1;'),
     fail('file', 'not starting with')),
    ('config-override-bad-ucl', config(file='rspamd/override.d/actions.conf', content='reject = 15;\ngroup {\n'),
     fail('content', 'not valid Rspamd UCL')),
    ('config-dkim-signing-without-force', config(file='rspamd/override.d/dkim_signing.conf', content='x = 1;'),
     fail('file', 'dms_dkim')),
    ('config-user-patches-syntax', config(file='user-patches.sh', content='#!/bin/bash\nif true; then\n'),
     fail('content', 'bash -n finds a syntax error')),
    ('config-custom-commands-traversal', config(file='rspamd/custom-commands.conf',
                                                content='add-line ../../cron.d/x * * * * * root id\n'),
     fail('content', 'must not contain "/"')),
    ('config-custom-commands-unknown', config(file='rspamd/custom-commands.conf', content='rm -rf /\n'),
     fail('content', 'not a command')),
    ('config-custom-commands-no-value', config(file='rspamd/custom-commands.conf',
                                               content='set-option-for-module actions add_header\n'),
     fail('content', 'takes 3')),
    ('config-custom-commands-sed-syntax', config(file='rspamd/custom-commands.conf',
                                                 content='set-common-option dns_timeout 1s|reboot\n'),
     fail('content', 'sed')),
    ('config-custom-commands-bad-ucl', config(file='rspamd/custom-commands.conf',
                                              content='add-line multimap.conf X {\n'),
     fail('content', 'not valid Rspamd UCL')),
    ('config-fail2ban-not-ini', config(file='fail2ban-jail.cf', content='ignoreip = 192.0.2.1\n'),
     fail('content', 'INI')),
    ('config-content-nul', config(file='spamassassin-rules.cf', content='score X 1\x00\n'),
     fail('content', 'NUL')),
    ('config-content-crlf', config(file='amavis.cf', content='1;\r\n'), fail('content', 'carriage return')),
    ('config-mode-bad', config(file='amavis.cf', content='1;\n', mode='u=rw'), fail('mode', 'octal')),
    ('config-exclusive-content', config(file='amavis.cf', content='1;\n', exclusive=True),
     fail('exclusive', 'no meaning')),
    # dms_sieve: header injection in the reply, quote injection in generated Sieve, traversal in the file name,
    # scripts sievec refuses (nothing written, sievec's message)
    ('sieve-subject-newline', sieve(address='alice@example.com',
                                    vacation={'subject': 'Away\nBcc: all@example.com', 'body': 'b'}),
     fail(r'vacation\.subject', 'line break')),
    ('sieve-subject-cr', sieve(address='alice@example.com', vacation={'subject': 'Away\rX: y', 'body': 'b'}),
     fail(r'vacation\.subject', 'line break')),
    ('sieve-body-nul', sieve(address='alice@example.com', vacation={'body': 'b\x00'}),
     fail(r'vacation\.body', 'control character')),
    ('sieve-days-zero', sieve(address='alice@example.com', vacation={'body': 'b', 'days': 0}),
     fail(r'vacation\.days', 'from 1 to 60')),
    ('sieve-traversal-address', sieve(address='../../etc/cron.d/x@example.com', script='keep;'),
     fail('address', 'contains')),
    ('sieve-traversal-domain', sieve(address='x@../../etc', script='keep;'), fail('address', 'label')),
    ('sieve-address-newline', sieve(address='x@example.com\nbefore', script='keep;'), fail('address', 'line break')),
    ('sieve-forward-quote-injection', sieve(address='alice@example.com',
                                            forward={'addresses': ['x"; discard; "@example.com']}),
     fail(r'forward\.addresses\[0\]', 'contains')),
    ('sieve-forward-loop', sieve(address='alice@example.com', forward={'addresses': ['Alice@Example.com']}),
     fail(r'forward\.addresses', 'loop')),
    ('sieve-vacation-addresses-traversal', sieve(address='alice@example.com',
                                                 vacation={'body': 'b', 'addresses': ['../x@example.com']}),
     fail(r'vacation\.addresses\[0\]', 'contains')),
    ('sieve-days-too-long', sieve(address='alice@example.com', vacation={'body': 'b', 'days': 61}),
     fail(r'vacation\.days', 'from 1 to 60')),
    ('sieve-syntax-error', sieve(address='alice@example.com', script='require "fileinto";\nfileinto "x"\n'),
     fail('script', r'does not compile \(sievec\).*line 3')),
    ('sieve-unknown-extension', sieve(address='alice@example.com', script='require "editheader";\naddheader "X" "y";\n'),
     fail('script', 'does not compile.*editheader')),
    ('sieve-unknown-command', sieve(scope='before', script='discardd;\n'), fail('script', 'does not compile.*discardd')),
    ('sieve-script-nul', sieve(address='alice@example.com', script='keep;\x00'), fail('script', 'NUL')),
    ('sieve-duplicate', sieve(scripts=[{'address': 'alice@example.com', 'script': 'keep;'},
                                       {'address': 'ALICE@example.com', 'state': 'absent'}]),
     fail(r'scripts\[1\]\.address', 'listed twice')),
]

# Documented normalisations (docs/reliability.md): accepted, with exactly this result.
NORMALISED = [
    ('norm-account-uppercase', account(address='Bob@Example.COM', **NEW),
     ('postfix-accounts.cf', r'^bob@example\.com\|\{SHA512-CRYPT\}', "normalised to 'bob@example.com'")),
    ('norm-alias-uppercase', alias(alias='Sales@Example.COM', recipients=['Alice@Example.com']),
     ('postfix-virtual.cf', r'^sales@example\.com alice@example\.com$', "normalised to 'sales@example.com'")),
    ('norm-relay-at-domain', relay(domain='@Example.ORG', host='SMTP.Example.NET', port=587),
     ('postfix-relaymap.cf', r'^@example\.org \[smtp\.example\.net\]:587$', None)),
    ('norm-relay-trailing-dot', relay(domain='example.org.', host='smtp.example.net'),
     ('postfix-relaymap.cf', r'^@example\.org \[smtp\.example\.net\]:25$', None)),
    ('norm-relay-ipv6', relay(domain='example.org', host='2001:DB8:0:0::1', port=2525),
     ('postfix-relaymap.cf', r'^@example\.org \[2001:db8::1\]:2525$', None)),
    ('norm-fetch-quotes-escaped', fetch(**merged(FETCH, username="u' is 'root", password="p'w\\x27")),
     ('fetchmail.cf', r"^poll 'pop\.example\.net' proto pop3 user 'u\\x27 is \\x27root' pass 'p\\x27w\\\\x27' "
                      r"is 'alice@example\.com' here keep ssl$", None)),
    ('norm-fetch-getmail-traversal-id', fetch(**merged(FETCH, fetcher='getmail', username='../../../etc/cron.d/x')),
     ('getmail/_._.._.._etc_cron.d_x@pop.example.net.cf', r'^username = \.\./\.\./\.\./etc/cron\.d/x$', None)),
    ('norm-config-yaml-false', config(file='postfix-main.cf', settings={'smtputf8_enable': False}),
     ('postfix-main.cf', r'^smtputf8_enable = no$', None)),
    ('norm-config-list', config(file='postfix-main.cf', settings={'mynetworks': ['127.0.0.0/8', '192.0.2.0/24']}),
     ('postfix-main.cf', r'^mynetworks = 127\.0\.0\.0/8, 192\.0\.2\.0/24$', None)),
    ('norm-config-dovecot-hash-quoted', config(file='dovecot.cf', release_line='15.1', settings={
        'login_greeting': 'Mail # ready'}), ('dovecot.cf', r'^login_greeting = "Mail # ready"$', None)),
    ('norm-master-uppercase', master(name='BackUp', **NEW),
     ('dovecot-masters.cf', r'^backup\|\{SHA512-CRYPT\}', "normalised to 'backup'")),
    ('norm-dkim-uppercase', dkim(domain='Example.ORG', selector='Sel1', key_type='ed25519'),
     ('opendkim/KeyTable', r'^sel1\._domainkey\.example\.org example\.org:sel1:/etc/opendkim/keys/example\.org/'
                           r'sel1\.private$', None)),
]


def _outside(base, name, kind='file'):
    """Something outside config_dir for a symlink to point at, in a directory of its own: a file, a directory
    with files, or nothing (a dangling link)."""
    home = base / 'outside' / name
    home.mkdir(parents=True)
    target = home / 'target'
    if kind == 'file':
        target.write_text('outside content, never to be touched\n')
    elif kind == 'dir':
        target.mkdir()
        (target / 'mail.private').write_text('outside key, never to be touched\n')
        (target / 'KeyTable').write_text('outside table\n')
    return target


def _link(cfg, relpath, target):
    path = cfg / relpath
    if path.is_dir() and not path.is_symlink():
        import shutil
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(str(target), str(path))


# (id, (module, args), relpath in config_dir made a symlink, kind of the outside target)
SYMLINK_CASES = [
    ('link-info-accounts', info(gather=['accounts']), 'postfix-accounts.cf', 'file'),
    ('link-info-sasl', info(gather=['relays']), 'postfix-sasl-password.cf', 'file'),
    ('link-info-private-key', info(gather=['dkim']), 'opendkim/keys/example.com/mail.private', 'file'),
    ('link-fetchmail', fetch(**FETCH), 'fetchmail.cf', 'file'),
    ('link-getmail-dir', fetch(**merged(FETCH, fetcher='getmail')), 'getmail', 'dir'),
    ('link-getmail-file', fetch(**merged(FETCH, fetcher='getmail', username='gseed')), 'getmail/seed.cf', 'file'),
    ('link-accounts', account(address='x@example.com', **NEW), 'postfix-accounts.cf', 'file'),
    ('link-quotas', account(address='alice@example.com', quota='2G'), 'dovecot-quotas.cf', 'file'),
    ('link-send-access', account(address='alice@example.com', restrict=[]), 'postfix-send-access.cf', 'file'),
    ('link-receive-access', account(address='alice@example.com', restrict=['send']), 'postfix-receive-access.cf',
     'file'),
    ('link-virtual-from-account', account(address='x@example.com', **NEW), 'postfix-virtual.cf', 'file'),
    ('link-virtual', alias(alias='new@example.com', recipients=['alice@example.com']), 'postfix-virtual.cf', 'file'),
    ('link-regexp', alias(alias='/^x-.*@example\\.com$/', type='regexp', recipients=['alice@example.com']),
     'postfix-regexp.cf', 'file'),
    ('link-accounts-from-alias', alias(alias='@example.com', recipients=['alice@example.com']),
     'postfix-accounts.cf', 'file'),
    ('link-masters', master(name='backup', **NEW), 'dovecot-masters.cf', 'file'),
    ('link-accounts-from-master', master(name='backup', **NEW), 'postfix-accounts.cf', 'file'),
    ('link-relaymap', relay(domain='example.org', host='smtp.example.net'), 'postfix-relaymap.cf', 'file'),
    ('link-sasl', relay(domain='example.org', username='u', password=PW), 'postfix-sasl-password.cf', 'file'),
    ('link-sasl-dangling', relay(domain='example.org', username='u', password=PW), 'postfix-sasl-password.cf',
     'missing'),
    ('link-keytable', dkim(domain='example.org', key_type='ed25519'), 'opendkim/KeyTable', 'file'),
    ('link-signingtable', dkim(domain='example.org', key_type='ed25519'), 'opendkim/SigningTable', 'file'),
    ('link-trustedhosts', dkim(domain='example.org', key_type='ed25519'), 'opendkim/TrustedHosts', 'file'),
    ('link-opendkim-dir', dkim(domain='example.org', key_type='ed25519'), 'opendkim', 'dir'),
    ('link-keys-dir', dkim(domain='example.org', key_type='ed25519'), 'opendkim/keys', 'dir'),
    ('link-domain-key-dir', dkim(domain='example.com', key_type='ed25519', regenerate='always'),
     'opendkim/keys/example.com', 'dir'),
    ('link-private-key', dkim(domain='example.com', regenerate='always', key_size=1024),
     'opendkim/keys/example.com/mail.private', 'file'),
    ('link-private-key-dangling', dkim(domain='example.org', key_type='ed25519'),
     'opendkim/keys/example.org/mail.private', 'missing'),
    ('link-rspamd-dir', dkim(domain='example.org', key_type='ed25519', backend='rspamd'), 'rspamd', 'dir'),
    ('link-rspamd-dkim-dir', dkim(domain='example.org', key_type='ed25519', backend='rspamd'), 'rspamd/dkim', 'dir'),
    ('link-rspamd-conf', dkim(domain='example.org', key_type='ed25519', backend='rspamd'),
     'rspamd/override.d/dkim_signing.conf', 'file'),
    ('link-config-main', config(file='postfix-main.cf', settings={'smtputf8_enable': False}), 'postfix-main.cf',
     'file'),
    ('link-config-dovecot', config(file='dovecot.cf', release_line='16', settings={'mail_max_userip_connections': 5}),
     'dovecot.cf', 'file'),
    ('link-config-user-patches-dangling', config(file='user-patches.sh', content='echo hi\n'), 'user-patches.sh',
     'missing'),
    ('link-config-override-dir', config(file='rspamd/override.d/actions.conf', content='reject = 20;\n'),
     'rspamd/override.d', 'dir'),
]


@pytest.fixture(scope='module')
def key_pem():
    return pem_pkcs8(generate_key('rsa', 1024))


def test_hostile_input_matrix(tmp_path, key_pem):
    cases = []   # (id, module, args, cfg, expectation, outside)
    for case_id, (module, args), expect in INPUT_CASES:
        cases.append((case_id, module, args, expect, None, None))
    for case_id, (module, args), expect in NORMALISED:
        cases.append((case_id, module, args, ('ok',) + expect, None, None))
    for case_id, (module, args), relpath, kind in SYMLINK_CASES:
        # The message names the file (under the linked directory) and why: it is outside config_dir.
        cases.append((case_id, module, args, fail(re.escape(relpath), 'outside config_dir'), relpath, kind))
    assert len(cases) >= 60
    assert len(set(c[0] for c in cases)) == len(cases)

    tasks, prepared = [], []
    for case_id, module, args, expect, relpath, kind in cases:
        cfg = tmp_path / 'cfg' / case_id
        write_files(cfg, _seed(key_pem))
        outside = None
        if relpath is not None:
            outside = _outside(tmp_path, case_id, kind)
            _link(cfg, relpath, outside)
        before = (tree(cfg), tree(outside.parent) if outside is not None else None)  # the case's own dir
        prepared.append((case_id, cfg, expect, outside, before))
        tasks.append(dict(task(module, case_id, config_dir=str(cfg), **args), ignore_errors=True))

    # Two playbooks at once (one per core), each with half of the cases.
    half = (len(tasks) + 1) // 2
    with ThreadPoolExecutor(2) as pool:
        plays = list(pool.map(lambda part: run_play(tmp_path, tasks[part[0]:part[1]], name='hostile%d' % part[0]),
                              [(0, half), (half, len(tasks))]))
    results = []
    for play in plays:
        results.extend(play.tasks)
    assert len(results) == len(tasks), ''.join(p.stdout[-3000:] + p.stderr[-3000:] for p in plays)

    problems = []
    for (case_id, cfg, expect, outside, before), result in zip(prepared, results):
        try:
            _check(case_id, cfg, expect, outside, before, result)
        except AssertionError as exc:
            problems.append('%s: %s' % (case_id, exc))
    assert not problems, '\n'.join(problems)
    failures = sum(1 for c in cases if c[3][0] == 'fail')
    note('hostile input: %d cases in two playbooks (%d clean failures with the config dir and every symlink target '
         'byte-identical, %d documented normalisations), %d of them symlinks out of config_dir'
         % (len(cases), failures, len(cases) - failures, len(SYMLINK_CASES)))


def _check(case_id, cfg, expect, outside, before, result):
    msg = result.get('msg', '')
    if expect[0] == 'fail':
        dummy, field, problem = expect
        assert result.get('failed') is True, 'did not fail: %r' % result
        # fail_json, not a crash: ansible-core 2.19 records '(traceback unavailable)' for every fail_json.
        assert 'Traceback' not in msg and 'MODULE FAILURE' not in msg and 'Module failed' not in msg and \
            result.get('exception', '(traceback unavailable)') == '(traceback unavailable)', \
            'not a clean failure: %r' % result
        assert re.match(field, msg), 'the message does not start with the field %r: %r' % (field, msg)
        assert re.search(problem, msg), 'the message does not say %r: %r' % (problem, msg)
        after = tree(cfg)
        assert after == before[0], 'the config dir changed: %r' % sorted(set(after.items()) ^ set(before[0].items()))
        if outside is not None:
            assert tree(outside.parent) == before[1], 'the symlink target outside config_dir changed'
        return
    dummy, relpath, line_re, warning = expect
    assert not result.get('failed'), 'failed: %r' % result
    assert result.get('changed') is True
    text = (cfg / relpath).read_text()
    assert re.search(line_re, text, re.M), '%s has no line matching %r:\n%s' % (relpath, line_re, text)
    if warning:
        assert any(warning in w for w in result.get('warnings', [])), result.get('warnings')


def test_symlink_inside_config_dir_is_followed_and_hard_link_to_outside_is_broken(tmp_path):
    """Documented: a symlink that stays inside config_dir is followed (the link stays, its target is updated); a
    hard link to a file outside is replaced by the new file (the rename breaks it), so the outside file keeps its
    bytes."""
    cfg = tmp_path / 'cfg'
    write_files(cfg, {'real/virtual.cf': 'info@example.com alice@example.com\n'})
    os.symlink('real/virtual.cf', str(cfg / 'postfix-virtual.cf'))
    outside = tmp_path / 'outside-relaymap.cf'
    outside.write_text('@example.com [smtp.example.net]:587\n')
    os.link(str(outside), str(cfg / 'postfix-relaymap.cf'))
    play = run_play(tmp_path, [
        task('dms_alias', config_dir=str(cfg), alias='new@example.com', recipients=['alice@example.com']),
        task('dms_relay', config_dir=str(cfg), domain='example.org', host='smtp.example.org'),
    ])
    assert not play.failed, play.stdout + play.stderr
    assert os.readlink(str(cfg / 'postfix-virtual.cf')) == 'real/virtual.cf'
    assert (cfg / 'real/virtual.cf').read_text() == 'info@example.com alice@example.com\nnew@example.com alice@example.com\n'
    assert outside.read_text() == '@example.com [smtp.example.net]:587\n'
    assert os.stat(str(outside)).st_nlink == 1
    assert '@example.org [smtp.example.org]:25' in (cfg / 'postfix-relaymap.cf').read_text()


def test_config_non_utf8_value_never_reaches_a_file(tmp_path):
    """A value that is not UTF-8 cannot even reach dms_config: ansible-core refuses to pass it (the module's own
    check, tested in the unit tests, is the second line). Either way nothing is written."""
    cfg = tmp_path / 'cfg'
    write_files(cfg, {'postfix-main.cf': 'smtpd_banner = x\n'})
    before = tree(cfg)
    play = run_play(tmp_path, [
        dict(task('dms_config', 'non-utf8-setting', config_dir=str(cfg), file='postfix-main.cf',
                  settings={'smtpd_banner': "{{ 'YWL/Yg==' | b64decode }}"}), ignore_errors=True),
        dict(task('dms_config', 'non-utf8-content', config_dir=str(cfg), file='spamassassin-rules.cf',
                  content="{{ 'YWL/Ygo=' | b64decode }}"), ignore_errors=True),
    ])
    assert [t.get('failed') for t in play.tasks] == [True, True], play.stdout + play.stderr
    assert all('utf-8' in t['msg'].lower() or 'UTF-8' in t['msg'] for t in play.tasks)
    assert tree(cfg) == before


def test_matrix_is_documented():
    text = (Path(__file__).resolve().parents[2] / 'docs' / 'reliability.md').read_text()
    for word in ('symlink', 'hard link', 'normalis'):
        assert word in text, word
