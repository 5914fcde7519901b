# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers: property-based tests (hypothesis).

1. Reading and writing every DMS file type is lossless: for arbitrary content -- comments, blank lines, CRLF and
   LF mixed, a missing final newline, odd white space, unparseable lines, invalid UTF-8 -- an unchanged table renders
   the original bytes (through ConfigDir too: nothing is written); an edit changes only the edited line (and drops
   later duplicates of its key) and writes every line LF-terminated.
2. Whatever the writers produce from valid input is accepted by the collection's own validators and parsers, by
   Debian's Postfix (postmap -s / -q on texthash and pcre tables), Dovecot (doveadm pw -t on every hash) and
   OpenDKIM/OpenSSL (opendkim -n opens KeyTable and SigningTable; openssl derives the published key) -- and a
   second identical run changes nothing.
"""
from __future__ import annotations

import os
import re
import shutil
import string
import subprocess
import tempfile

from dkimtest import config_check, copy_like_dms, opendkim_conf, openssl_public_b64
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from reltest import check_config_dir, postmap_queries, run_module

from ansible_collections.dms.mailserver.plugins.module_utils._configdir import FILES, ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._table import (
    Entry, Table, parse_colon, parse_pipe, parse_regexp, parse_whitespace, split_lines,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- arbitrary file content ----------------------------------------------------------

_ANY = st.characters(blacklist_characters='\n', blacklist_categories=('Cs',))
_WS = st.text(alphabet=' \t\x0b\x0c\u00a0\u3000', max_size=3)
_TOKEN = st.text(alphabet=st.characters(blacklist_categories=('Cs', 'Zs', 'Cc')), min_size=1, max_size=12)


def _data_line(separators):
    """A line with a key, a separator and a value, with odd white space around."""
    def build(sep):
        return st.builds(lambda lead, key, value: lead + key + sep + value, _WS,
                         _TOKEN.filter(lambda t: not t.startswith('#') and sep.strip() not in t),
                         st.text(_ANY, max_size=20))
    return st.sampled_from(separators).flatmap(build)


_REGEXP_LINE = st.builds(lambda lead, delim, pattern, flags, gap, value: '%s%s%s%s%s%s%s' % (
    lead, delim, pattern.replace(delim, '\\' + delim), delim, flags, gap, value),
    _WS, st.sampled_from('/!|%'), st.text(_ANY.filter(lambda c: c != '\\'), max_size=12),
    st.sampled_from(['', 'i', 'x']), st.sampled_from([' ', '\t', '  \t']), st.text(_ANY, max_size=20))

LINE_STRATEGIES = {
    'pipe': _data_line(['|', ' |', '| ']),
    'colon': _data_line([':', ' : ']),
    'whitespace': _data_line([' ', '\t', ' \t  ']),
    'regexp': _REGEXP_LINE,
}
PARSERS = {'pipe': parse_pipe, 'colon': parse_colon, 'whitespace': parse_whitespace, 'regexp': parse_regexp}
# The files of each format, for the ConfigDir-level properties.
FILES_BY_PARSER = {
    'pipe': ['accounts', 'masters'],
    'colon': ['quotas'],
    'whitespace': ['virtual', 'send_access', 'receive_access', 'relaymap', 'sasl', 'opendkim_keytable',
                   'opendkim_signingtable', 'opendkim_trustedhosts'],
    'regexp': ['regexp'],
}


def _other_lines():
    return st.one_of(
        st.builds(lambda lead, text: lead + '#' + text, _WS, st.text(_ANY, max_size=20)),   # comments
        _WS,                                                                                   # blank lines
        st.text(_ANY, max_size=25),                                                            # anything
    )


def _file(kind):
    line = st.one_of(LINE_STRATEGIES[kind], LINE_STRATEGIES[kind], _other_lines())
    ending = st.sampled_from(['\n', '\r\n'])
    return st.builds(lambda lines, endings, last: ''.join(l + e for l, e in zip(lines, endings)) + last,
                     st.lists(line, max_size=12), st.lists(ending, min_size=12, max_size=12),
                     st.one_of(st.just(''), line.filter(lambda l: not l.endswith('\r'))))


def _lf(lines):
    return ''.join(line + '\n' for line in lines)


def _fold(kind):
    return kind != 'regexp'


def _check_unchanged(kind, text):
    table = Table(text, PARSERS[kind], _fold(kind))
    assert table.render() == text
    # Every line is kept, in order: as an entry, or as an unmanaged line.
    kept = [item.raw if isinstance(item, Entry) else item for item in table.items]
    assert kept == split_lines(text)


def _check_edit(kind, text, data):
    table = Table(text, PARSERS[kind], _fold(kind))
    lines = split_lines(text)
    entries = [(pos, item) for pos, item in enumerate(table.items) if isinstance(item, Entry)]
    action = data.draw(st.sampled_from(['set', 'remove', 'add']))
    if action == 'add' or not entries:
        key = data.draw(st.text(string.ascii_lowercase, min_size=1, max_size=8).map(lambda k: 'new-' + k))
        if kind == 'regexp':
            key = '/%s/' % key
        assume(not table.has(key))
        raw = _line_for(kind, key, data)
        assert table.set(key, raw)
        assert table.render() == _lf(lines + [raw])
        return
    pos, entry = data.draw(st.sampled_from(entries))
    same = [p for p, e in entries if table.norm(e.key) == table.norm(entry.key)]
    if action == 'remove':
        assert table.remove(entry.key)
        assert table.render() == _lf([line for p, line in enumerate(lines) if p not in same])
        return
    raw = _line_for(kind, entry.key.strip(), data)
    table.set(entry.key, raw)
    first = same[0]
    expected = [raw if p == first else line for p, line in enumerate(lines) if p == first or p not in same]
    if raw == lines[first] and len(same) == 1:
        assert table.render() == text      # nothing changed: the original bytes
    else:
        assert table.render() == _lf(expected)


def _line_for(kind, key, data):
    value = data.draw(st.text(_ANY, min_size=1, max_size=15).filter(lambda v: v.strip()))
    if kind == 'pipe':
        return '%s|%s' % (key, value)
    if kind == 'colon':
        return '%s:%s' % (key, value)
    return '%s %s' % (key, value)


@FAST
@given(st.sampled_from(sorted(PARSERS)).flatmap(lambda kind: st.tuples(st.just(kind), _file(kind))))
def test_unchanged_table_renders_the_original(case):
    _check_unchanged(*case)


@FAST
@given(st.sampled_from(sorted(PARSERS)).flatmap(lambda kind: st.tuples(st.just(kind), _file(kind))), st.data())
def test_an_edit_changes_only_its_line_and_normalises_endings(case, data):
    _check_edit(case[0], case[1], data)


@FAST
@given(st.sampled_from(sorted(FILES)), st.lists(st.binary(max_size=30).map(lambda b: b.replace(b'\n', b'')),
                                                max_size=8),
       st.lists(st.sampled_from([b'\n', b'\r\n']), min_size=8, max_size=8), st.booleans())
def test_configdir_keeps_arbitrary_bytes(name, lines, endings, final):
    """Bytes that are not UTF-8 included: an untouched file is not written; an edit keeps every other line's bytes."""
    data = b''.join(line + end for line, end in zip(lines, endings))
    if not final and lines:
        data = data[:-len(endings[len(lines) - 1])]
    root = tempfile.mkdtemp()
    try:
        spec = FILES[name]
        path = os.path.join(root, spec.relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as handle:
            handle.write(data)
        with ConfigDir(root) as cfg:
            cfg.table(name)
            assert cfg.commit()[0] == []
        with open(path, 'rb') as handle:
            assert handle.read() == data
        with ConfigDir(root) as cfg:
            key = '/^new-key$/' if spec.parser is parse_regexp else 'new-key@example.com'
            sep = '|' if spec.parser is parse_pipe else ':' if spec.parser is parse_colon else ' '
            cfg.table(name).set(key, key + sep + 'value')
            cfg.commit()
        with open(path, 'rb') as handle:
            written = handle.read()
        old_lines = [line[:-1] if line.endswith(b'\r') else line for line in data.split(b'\n')]
        if old_lines and old_lines[-1] == b'':
            old_lines.pop()
        assert written == b''.join(line + b'\n' for line in old_lines) + (key + sep + 'value\n').encode()
    finally:
        shutil.rmtree(root)


# -- what the writers produce ------------------------------------------------------------

_LOCAL_CHARS = string.ascii_letters + string.digits + "!#$&'*+=?^_`{}~.-"
_LABEL = st.from_regex(r'[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?', fullmatch=True)
DOMAINS = st.builds(lambda labels, tld: '.'.join(labels + [tld]), st.lists(_LABEL, min_size=1, max_size=3),
                    st.from_regex(r'[a-z]{2,6}', fullmatch=True)).filter(lambda d: len(d) <= 60)
LOCALS = st.text(_LOCAL_CHARS, min_size=1, max_size=16).filter(
    lambda s: not s.startswith('.') and not s.endswith('.') and '..' not in s
    and not s.startswith('#'))  # _validate.address: such a line would be a comment
ADDRESSES = st.builds(lambda local, domain: '%s@%s' % (local, domain), LOCALS, DOMAINS)
# At most 18 characters: even 18 four-byte characters fit BLF-CRYPT's 72 bytes (a longer one is refused for it).
PASSWORDS = st.text(st.characters(blacklist_characters='\r\n\x00', blacklist_categories=('Cs',)), min_size=1,
                    max_size=18)
QUOTAS = st.one_of(st.just('0'), st.builds(lambda n, unit: '%d%s' % (n, unit), st.integers(1, 99999),
                                           st.sampled_from('BkMGT')))


def _tmpdir():
    return tempfile.mkdtemp(prefix='dms-prop-')


@TOOLS
@example([{'address': 'a#b@example.com', 'password': 'pw with spaces \u00e9\u00a0\u4e2d', 'quota': '0',
           'restrict': ['send', 'receive'], 'scheme': 'SHA512-CRYPT'}])
@given(st.lists(st.fixed_dictionaries({
    'address': ADDRESSES, 'password': PASSWORDS, 'quota': QUOTAS,
    'restrict': st.lists(st.sampled_from(['send', 'receive']), unique=True),
    'scheme': st.sampled_from(['SHA512-CRYPT'] * 6 + ['BLF-CRYPT', 'ARGON2ID'])}),
    min_size=1, max_size=4, unique_by=lambda a: a['address'].lower()))
def test_accounts_written_are_read_back_by_dovecot_and_postfix(accounts):
    root = _tmpdir()
    try:
        args = {'config_dir': root, 'accounts': accounts}
        rc, result = run_module('dms_account', args)
        assert rc == 0, result
        passwords = dict((a['address'].lower(), a['password']) for a in accounts)
        tables = check_config_dir(root, passwords)     # own parsers + validators, postmap -s, doveadm pw -t
        assert sorted(tables['accounts']) == sorted(passwords)
        for a in accounts:
            assert tables['quotas'][a['address'].lower()] == a['quota']
            for direction, name in (('send', 'send_access'), ('receive', 'receive_access')):
                assert (a['address'].lower() in tables.get(name, {})) is (direction in a['restrict'])
        rc, again = run_module('dms_account', args)
        assert rc == 0 and again['changed'] is False, again
    finally:
        shutil.rmtree(root)


_USER_CHARS = st.characters(blacklist_characters=':', blacklist_categories=('Cs', 'Cc'))
# _relay: no white space (of any kind) at either end.
USERNAMES = st.text(_USER_CHARS, min_size=1, max_size=16).filter(lambda u: u == u.strip())
RELAY_PASSWORDS = st.text(st.characters(blacklist_categories=('Cs', 'Cc')), min_size=1, max_size=24).filter(
    lambda p: p == p.strip())
HOSTS = st.one_of(DOMAINS, st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))


@TOOLS
@example([{'domain': 'example.com', 'host': '2001:DB8:0:0::1', 'port': 587, 'username': 'us er\u00a0x',
           'password': 'p#w: \u00a0!'}])
@given(st.lists(st.fixed_dictionaries({
    'domain': DOMAINS, 'host': HOSTS, 'port': st.integers(1, 65535), 'username': USERNAMES,
    'password': RELAY_PASSWORDS}), min_size=1, max_size=4, unique_by=lambda r: r['domain']))
def test_relays_written_are_read_back_by_postfix(relays):
    root = _tmpdir()
    try:
        args = {'config_dir': root, 'relays': relays}
        rc, result = run_module('dms_relay', args)
        assert rc == 0, result
        tables = check_config_dir(root)
        relaymap = postmap_queries('texthash:%s/postfix-relaymap.cf' % root, ['@' + r['domain'] for r in relays])
        sasl = postmap_queries('texthash:%s/postfix-sasl-password.cf' % root, ['@' + r['domain'] for r in relays])
        for r in relays:
            host = r['host'] if ':' not in r['host'] else str(__import__('ipaddress').IPv6Address(r['host']))
            assert relaymap['@' + r['domain']] == '[%s]:%d' % (host, r['port'])
            assert sasl['@' + r['domain']] == '%s:%s' % (r['username'], r['password'])
            assert tables['sasl']['@' + r['domain']].strip() == '%s:%s' % (r['username'], r['password'])
        rc, again = run_module('dms_relay', args)
        assert rc == 0 and again['changed'] is False, again
    finally:
        shutil.rmtree(root)


@TOOLS
@given(st.lists(st.tuples(st.one_of(ADDRESSES, DOMAINS.map(lambda d: '@' + d)),
                          st.lists(ADDRESSES, min_size=1, max_size=3)),
                min_size=1, max_size=3, unique_by=lambda a: a[0].lower()),
       st.lists(st.tuples(LOCALS, DOMAINS, st.lists(ADDRESSES.filter(lambda a: '$' not in a), min_size=1,
                                                    max_size=2)), min_size=1, max_size=3,
                unique_by=lambda a: (a[0], a[1])))
def test_aliases_written_are_read_back_by_postfix(virtual, regexps):
    root = _tmpdir()
    try:
        aliases = [{'alias': key, 'recipients': recipients} for key, recipients in virtual]
        aliases += [{'alias': '/^%s@%s$/' % (re.escape(local), re.escape(domain)), 'type': 'regexp',
                     'recipients': recipients} for local, domain, recipients in regexps]
        rc, result = run_module('dms_alias', {'config_dir': root, 'aliases': aliases})
        if rc != 0 and 'listed twice' in result.get('msg', ''):
            assume(False)  # recipients that differ only in case
        assert rc == 0, result
        tables = check_config_dir(root)
        found = postmap_queries('texthash:%s/postfix-virtual.cf' % root, [k for k, dummy in virtual])
        for key, recipients in virtual:
            assert found[key].split(',') == [r.lower() for r in recipients]
            assert tables['virtual'][key.lower()].split(',') == [r.lower() for r in recipients]
        for local, domain, recipients in regexps:
            address = '%s@%s' % (local, domain)
            assert postmap_queries('pcre:%s/postfix-regexp.cf' % root, [address])[address].split(',') == \
                [r.lower() for r in recipients]
        rc, again = run_module('dms_alias', {'config_dir': root, 'aliases': aliases})
        assert rc == 0 and again['changed'] is False, again
    finally:
        shutil.rmtree(root)


SELECTORS = st.from_regex(r'[a-z0-9]([a-z0-9_-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5})?', fullmatch=True)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(DOMAINS, min_size=1, max_size=3, unique=True), SELECTORS, st.sampled_from(['rsa', 'ed25519']))
def test_dkim_tables_written_are_read_by_opendkim(domains, selector, key_type):
    root = _tmpdir()
    try:
        args = {'config_dir': root, 'domains': domains, 'selector': selector, 'key_type': key_type}
        if key_type == 'rsa':
            args['key_size'] = 1024
        rc, result = run_module('dms_dkim', args)
        assert rc == 0, result
        check_config_dir(root)
        etc = os.path.join(root, 'etc-opendkim')
        copy_like_dms(root, etc)
        conf = os.path.join(root, 'opendkim.conf')
        with open(conf, 'w') as handle:
            handle.write(opendkim_conf(etc, algorithm='rsa-sha256' if key_type == 'rsa' else 'ed25519-sha256'))
        code, output = config_check(conf)
        assert code == 0, output
        for record in result['records']:
            private = os.path.join(root, 'opendkim/keys/%s/%s.private' % (record['domain'], selector))
            assert record['value'].endswith('p=' + openssl_public_b64(private))
            assert record['name'] == '%s._domainkey.%s' % (selector, record['domain'])
        rc, again = run_module('dms_dkim', args)
        assert rc == 0 and again['changed'] is False, again
    finally:
        shutil.rmtree(root)


def test_doveadm_and_postmap_are_there():
    """The tool-backed properties above need Debian's tools (hack/test.sh installs them)."""
    for tool in ('postmap', 'doveadm', 'opendkim', 'openssl'):
        assert shutil.which(tool) or os.path.exists('/usr/sbin/' + tool), tool
    assert subprocess.run(['postconf', '-m'], capture_output=True, text=True, check=True).stdout.count('pcre') == 1


# -- dms_config's override formats (postfix-main.cf, postfix-master.cf, dovecot.cf) ------------------------------

_CONF_LINE = st.one_of(
    st.text(_ANY, max_size=30),                                                   # anything at all
    st.builds(lambda key, value: '%s = %s' % (key, value),
              _TOKEN.filter(lambda t: not any(c in t for c in '={}#')),
              st.text(_ANY.filter(lambda c: c not in '{}'), max_size=20)),
    st.builds(lambda ws, text: ws + text, st.sampled_from([' ', '\t', '  ']), st.text(_ANY, max_size=20)),
    st.sampled_from(['# comment', '', '   ', 'service imap {', '}', '  inet_listener imap {', 'a=b', 'x/inet/y=z']),
)
_CONF_TEXT = st.builds(lambda lines, end: '\n'.join(lines) + end, st.lists(_CONF_LINE, max_size=12),
                       st.sampled_from(['', '\n']))


@FAST
@given(_CONF_TEXT)
def test_override_files_render_unchanged_text_byte_for_byte(text):
    from ansible_collections.dms.mailserver.plugins.module_utils import _confformats as fmt
    assert fmt.PostfixMain(text).render() == text
    assert fmt.MasterOverrides(text).render() == text
    try:
        conf = fmt.DovecotConf(text)
    except fmt.DovecotError:
        return   # unbalanced braces: refused, nothing is written
    assert conf.render() == text


_KEY = st.text(alphabet=string.ascii_lowercase + '_', min_size=1, max_size=12)
_VALUE = st.text(alphabet=string.ascii_letters + string.digits + '/.,:$_-', min_size=1, max_size=20)


@FAST
@given(_CONF_TEXT, _KEY, _VALUE)
def test_postfix_main_set_changes_only_that_key_and_postconf_reads_the_value(text, key, value):
    from ansible_collections.dms.mailserver.plugins.module_utils import _confformats as fmt
    before = fmt.PostfixMain(text)
    others = [(k, v) for k, v in before.items() if k != key]
    conf = fmt.PostfixMain(text)
    conf.set(key, value)
    out = conf.render()
    again = fmt.PostfixMain(out)
    assert again.get(key) == value
    assert [(k, v) for k, v in again.items() if k != key] == others
    second = fmt.PostfixMain(out)
    assert second.set(key, value) is False and second.render() == out


_MAIN_KEYS = st.sampled_from(['smtpd_banner', 'myorigin', 'relayhost', 'alias_maps', 'header_checks', 'transport_maps'])


@TOOLS
@given(st.dictionaries(_MAIN_KEYS, _VALUE.filter(lambda value: '$' not in value), min_size=1, max_size=5))
def test_postconf_reads_what_postfix_main_writes(settings_):
    from ansible_collections.dms.mailserver.plugins.module_utils import _confformats as fmt
    conf = fmt.PostfixMain('# by hand\nmyhostname = mail.example.com\n')
    for key, value in settings_.items():
        conf.set(key, fmt.render_postfix(value, key))
    scratch = tempfile.mkdtemp()
    try:
        with open(os.path.join(scratch, 'main.cf'), 'w') as handle:
            handle.write(conf.render())
        with open(os.path.join(scratch, 'master.cf'), 'w') as handle:
            handle.write('')
        for key, value in settings_.items():
            proc = subprocess.run(['postconf', '-c', scratch, '-h', key], capture_output=True, text=True, check=False)
            assert proc.returncode == 0 and proc.stdout.rstrip('\n') == value, proc.stderr
    finally:
        shutil.rmtree(scratch)
