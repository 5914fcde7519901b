# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible_collections.dms.mailserver.plugins.module_utils._table import (
    Table, parse_colon, parse_pipe, parse_regexp, parse_whitespace, split_lines,
)

ACCOUNTS = (
    '# accounts\n'
    '\n'
    'a@x.com|{SHA512-CRYPT}$6$s$h\n'
    '   # indented comment\n'
    'junk without separator\n'
    'B@x.com|{SHA512-CRYPT}$6$t$i|userdb_mail=maildir:~/Maildir\n'
    'value with # is not a comment|x\n'
)


def test_unchanged_table_renders_original_bytes():
    for text in (ACCOUNTS, ACCOUNTS.replace('\n', '\r\n'), ACCOUNTS.rstrip('\n'), '', '\n\n'):
        assert Table(text, parse_pipe).render() == text


def test_comment_rule_is_first_non_blank_hash():
    table = Table(ACCOUNTS, parse_pipe)
    assert [e.key for e in table.entries()] == ['a@x.com', 'B@x.com', 'value with # is not a comment']
    assert table.has('b@x.com')  # case-insensitive lookup


def test_crlf_and_missing_final_newline_are_read():
    table = Table('a@x.com|h1\r\nb@x.com|h2', parse_pipe)
    assert table.get('a@x.com').value == 'h1'
    assert table.get('b@x.com').value == 'h2'
    assert split_lines('x\r\ny') == ['x', 'y']


def test_edit_keeps_comments_unknown_lines_and_order():
    table = Table(ACCOUNTS, parse_pipe)
    assert table.set('a@x.com', 'a@x.com|NEW')
    table.set('c@x.com', 'c@x.com|H3')
    out = table.render()
    assert out == ACCOUNTS.replace('a@x.com|{SHA512-CRYPT}$6$s$h', 'a@x.com|NEW') + 'c@x.com|H3\n'


def test_write_normalises_crlf_and_final_newline():
    table = Table('# c\r\na@x.com|h1', parse_pipe)
    table.set('b@x.com', 'b@x.com|h2')
    assert table.render() == '# c\na@x.com|h1\nb@x.com|h2\n'


def test_set_same_line_is_no_change():
    table = Table(ACCOUNTS, parse_pipe)
    assert not table.set('a@x.com', 'a@x.com|{SHA512-CRYPT}$6$s$h')
    assert not table.changed
    assert table.render() == ACCOUNTS


def test_duplicates_are_collapsed_to_the_first():
    table = Table('a@x.com:1G\n# mid\nA@x.com:2G\n', parse_colon)
    assert table.get('a@x.com').value == '1G'
    assert table.set('a@x.com', 'a@x.com:3G')
    assert table.render() == 'a@x.com:3G\n# mid\n'


def test_insert_before_anchor_and_remove():
    table = Table('x@d.com y@d.com\n@d.com t@e.com\n', parse_whitespace)
    table.set('a@d.com', 'a@d.com a@d.com', before_key='@d.com')
    assert table.render() == 'x@d.com y@d.com\na@d.com a@d.com\n@d.com t@e.com\n'
    assert table.remove('x@d.com')
    assert not table.remove('x@d.com')
    assert table.render() == 'a@d.com a@d.com\n@d.com t@e.com\n'
    assert table.get('@d.com').value == 't@e.com'


def test_whitespace_parser_lone_key_and_tabs():
    assert parse_whitespace('@d.com ') == ('@d.com', '')
    assert parse_whitespace('u@d.com \t\t REJECT') == ('u@d.com', 'REJECT')
    assert parse_whitespace('  u@d.com   a,b ') == ('u@d.com', 'a,b')


def test_regexp_parser():
    assert parse_regexp('/^info@(.*)$/ admin@x.com') == ('/^info@(.*)$/', 'admin@x.com')
    assert parse_regexp('/a\\/b/i   r@x.com,s@x.com') == ('/a\\/b/i', 'r@x.com,s@x.com')
    assert parse_regexp('if /x/') is None
    assert parse_regexp('/unterminated r@x.com') is None
