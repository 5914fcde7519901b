# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for dms_fetchmail (plugins/module_utils/_fetchmail.py, _fetchmailrc.py, _getmailrc.py) against real
temp config dirs."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmail
from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmailrc as rc
from ansible_collections.dms.mailserver.plugins.module_utils import _getmailrc as grc
from ansible_collections.dms.mailserver.plugins.module_utils._common import mode_diffs
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir, ConfigDirError
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

HASH = '{SHA512-CRYPT}$6$abcdefghijklmnop$' + 'A' * 86
SECRET = 'Unit-Fetch-Secret-9d2e'
FM = 'fetchmail.cf'


def params(**kwargs):
    base = dict(server=None, protocol=None, port=None, username=None, password=None, ssl=None, keep=None,
                folders=None, target=None, fetcher='fetchmail', state='present', fetches=None, exclusive=False,
                cleartext=None,
                validate=True)
    base.update(kwargs)
    return base


def item(**kwargs):
    base = dict(server=None, protocol=None, port=None, username=None, password=None, ssl=None, keep=None,
                folders=None, target=None, fetcher=None, state=None, cleartext=None)
    base.update(kwargs)
    return base


def apply(config_dir, check=False, binary=None, run=None, **kwargs):
    p = params(**kwargs)
    entries, dummy = _fetchmail.normalize(p)
    with ConfigDir(str(config_dir), check_mode=check) as cfg:
        result = _fetchmail.plan(cfg, p, entries, fetchmail_binary=binary, run=run)
        fixes = result.pop('_mode_fixes')
        diff = cfg.diff() + mode_diffs(cfg, fixes)
        changed, dummy = cfg.commit(extra_mode_fixes=fixes)
    return result, changed, diff


def read(config_dir, name):
    path = os.path.join(str(config_dir), name)
    if not os.path.exists(path):
        return None
    with open(path, 'rb') as handle:
        return handle.read().decode()


def write(config_dir, name, text, mode=0o644):
    path = os.path.join(str(config_dir), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(text.encode())
    os.chmod(path, mode)


def mode(config_dir, name):
    return stat.S_IMODE(os.stat(os.path.join(str(config_dir), name)).st_mode)


@pytest.fixture
def cdir(tmp_path):
    write(tmp_path, 'postfix-accounts.cf', 'alice@example.com|%s\nbob@example.com|%s\n' % (HASH, HASH), 0o600)
    return tmp_path


def merged(base, **changes):
    """``base`` with ``changes``, as a new dict."""
    out = dict(base)
    out.update(changes)
    return out


ALICE = dict(server='imap.remote.example', username='alice.r', password=SECRET, target='alice@example.com')


# -- the fetchmailrc format -----------------------------------------------------------------------------------


@pytest.mark.parametrize('value', ["plain", "it's", 'dq"uote', 'back\\slash', '\\x27', 'poll user pass',
                                   '#hash', 'semi;colon:comma,', 'ünïcode', "'", '\\', 'a\\nb'])
def test_quote_reads_back_exactly(value):
    tokens = rc.tokenize(rc.quote(value))
    assert len(tokens) == 1 and tokens[0].value == value


def test_escapes_as_fetchmail_resolves_them():
    assert rc.unescape(r'a\x27b') == "a'b"
    assert rc.unescape(r'\x4142') == 'A42'       # at most two hex digits
    assert rc.unescape(r'\101') == 'e'           # decimal, as fetchmail's escapes() reads it
    assert rc.unescape(r'\0411') == '!1'         # octal: the leading 0 counts as one of three digits
    assert rc.unescape(r'\q\\') == 'q\\'


def test_parse_finds_statements_servers_users_and_passwords():
    text = ("# comment\nset daemon 60\npoll 'a.example' proto pop3 user 'u1' pass 'p\\x27w' is 'x@y' here\n"
            "  keep\n\n# trailing\npoll b.example user pass pass poll is z\ndefaults proto imap\n")
    lines, statements = rc.parse(text)
    kinds = [(s.kind, s.server, s.users, s.first, s.last) for s in statements]
    assert kinds == [('set', None, [], 1, 1), ('poll', 'a.example', ['u1'], 2, 3),
                     ('poll', 'b.example', ['pass'], 6, 6), ('defaults', None, [], 7, 7)]
    assert statements[1].password() == "p'w"
    assert statements[2].password() == 'poll'    # a word after "pass" is a name, not a keyword


def test_parse_refuses_an_unterminated_quote():
    with pytest.raises(rc.RcError, match='never closed'):
        rc.parse("poll 'a user u\n")


def test_render_poll_is_one_line_in_grammar_order():
    line = rc.render_poll('h.example', 'imap', 993, 'u', 'p', 'a@b.example', True, False, ['INBOX', 'Sent Items'])
    assert line == ("poll 'h.example' proto imap service 993 user 'u' pass 'p' is 'a@b.example' here nokeep "
                    "folder 'INBOX','Sent Items' ssl")


def test_mask_hides_every_password_even_when_written_by_hand():
    text = "poll a user u pass secret1 is x\npoll b user 'v' password \"sec'2\"\n  esmtppassword s3\n"
    masked = rc.mask(text, lambda s: '<%s>' % len(s))
    assert 'secret1' not in masked and "sec'2" not in masked and 's3' not in masked
    assert masked.count('<') == 3


# -- the getmail format ---------------------------------------------------------------------------------------


def test_getmail_render_is_read_by_getmails_parser_after_dms_base():
    text = grc.render('imap', True, 'imap.example', 993, 'u', 'p%w;#x', ['INBOX', 'A "b" \\c'], 'a@b.example')
    sections = grc.check_combined(text)
    assert sections['retriever']['type'] == 'SimpleIMAPSSLRetriever'
    assert sections['retriever']['password'] == 'p%w;#x'
    assert sections['options']['delete'] == 'false'
    import ast
    assert ast.literal_eval(sections['retriever']['mailboxes']) == ('INBOX', 'A "b" \\c')
    assert ast.literal_eval(sections['destination']['arguments']) == ('-d', 'a@b.example')
    assert sections['destination']['path'] == '/usr/lib/dovecot/deliver'


def test_getmail_file_with_its_own_options_is_refused_as_getmail_would():
    with pytest.raises(grc.RcError, match='already exists'):
        grc.check_combined('[options]\ndelete = true\n')


def test_getmail_mask_hides_password_and_continuation():
    masked = grc.mask('[retriever]\npassword = abc\n  def\nserver = x\n', lambda s: '<m>')
    assert 'abc' not in masked and 'def' not in masked and 'server = x' in masked


# -- the module logic -----------------------------------------------------------------------------------------


def test_create_writes_0600_and_rerun_changes_nothing(cdir):
    result, changed, diff = apply(cdir, **ALICE)
    assert result['created'] == ['imap.remote.example/alice.r']
    assert changed == [FM]
    assert read(cdir, FM) == ("poll 'imap.remote.example' proto imap user 'alice.r' pass '%s' is "
                              "'alice@example.com' here keep ssl\n" % SECRET)
    assert mode(cdir, FM) == 0o600
    assert SECRET not in str(diff) and '<password #1 masked>' in diff[0]['after']
    before = read(cdir, FM)
    result, changed, diff = apply(cdir, **ALICE)
    assert changed == [] and result['created'] == result['updated'] == [] and read(cdir, FM) == before


def test_comments_and_other_polls_are_kept(cdir):
    original = ("# my notes\nset daemon 120\n\npoll other.example proto pop3\n  user 'x' pass 'OtherPw'\n"
                "  is 'bob@example.com'\n# end\n")
    write(cdir, FM, original)
    apply(cdir, **ALICE)
    text = read(cdir, FM)
    assert text.startswith(original)
    assert text.count('\n') == original.count('\n') + 1


def test_update_rewrites_in_place_and_keeps_password_when_omitted(cdir):
    write(cdir, FM, "# head\npoll IMAP.remote.example proto pop3\n  user 'alice.r' pass 'Old-Pw' is 'bob@example.com'\n"
                    "# tail\n", 0o600)
    result, changed, diff = apply(cdir, server='imap.remote.example', username='alice.r', target='alice@example.com')
    assert result['updated'] == ['imap.remote.example/alice.r']
    assert read(cdir, FM) == ("# head\npoll 'imap.remote.example' proto imap user 'alice.r' pass 'Old-Pw' is "
                              "'alice@example.com' here keep ssl\n# tail\n")
    assert 'Old-Pw' not in str(diff)


def test_check_mode_predicts_exactly_and_writes_nothing(cdir):
    write(cdir, FM, '# only a comment\n', 0o644)
    result, changed, diff = apply(cdir, check=True, **ALICE)
    assert changed == [FM] and result['created'] == ['imap.remote.example/alice.r']
    assert read(cdir, FM) == '# only a comment\n' and mode(cdir, FM) == 0o644
    result2, changed2, dummy = apply(cdir, **ALICE)
    assert changed2 == changed and result2['created'] == result['created']


def test_wide_mode_is_corrected_without_content_change(cdir):
    apply(cdir, **ALICE)
    os.chmod(os.path.join(str(cdir), FM), 0o644)
    result, changed, diff = apply(cdir, **ALICE)
    assert changed == [FM] and mode(cdir, FM) == 0o600
    assert diff[-1]['after'] == 'mode 0600\n'


def test_unknown_target_is_refused_and_nothing_written(cdir):
    with pytest.raises(ValidationError, match=r"^target: 'carol@example.com' is not an account"):
        apply(cdir, **merged(ALICE, target='carol@example.com'))
    assert read(cdir, FM) is None


def test_password_required_to_create(cdir):
    with pytest.raises(ValidationError, match='^password: is required to create'):
        apply(cdir, **merged(ALICE, password=None))


def test_absent_removes_from_both_fetchers(cdir):
    apply(cdir, **ALICE)
    apply(cdir, **merged(ALICE, server='pop.other.example', fetcher='getmail', protocol='pop3'))
    assert read(cdir, 'getmail/alice.r@pop.other.example.cf') is not None
    result, changed, dummy = apply(cdir, server='IMAP.remote.example', username='alice.r', state='absent')
    assert result['removed'] == ['imap.remote.example/alice.r'] and read(cdir, FM) == ''
    result, changed, dummy = apply(cdir, server='pop.other.example', username='alice.r', state='absent')
    assert changed == ['getmail/alice.r@pop.other.example.cf']
    assert read(cdir, 'getmail/alice.r@pop.other.example.cf') is None


def test_getmail_file_and_move_between_fetchers(cdir):
    result, changed, diff = apply(cdir, **merged(ALICE, fetcher='getmail', folders=['INBOX', 'Old']))
    path = 'getmail/alice.r@imap.remote.example.cf'
    assert changed == [path] and mode(cdir, path) == 0o600
    assert SECRET not in str(diff)
    text = read(cdir, path)
    assert 'type = SimpleIMAPSSLRetriever' in text and 'mailboxes = ("INBOX", "Old",)' in text
    assert 'arguments = ("-d", "alice@example.com")' in text
    grc.check_combined(text)
    result, changed, dummy = apply(cdir, **ALICE)          # back to fetchmail
    assert sorted(changed) == [FM, path] and result['updated'] == ['imap.remote.example/alice.r']
    assert read(cdir, path) is None and 'alice.r' in read(cdir, FM)


def test_getmail_keep_false_is_refused(cdir):
    with pytest.raises(ValidationError, match=r'^keep: false cannot be set per getmail file'):
        apply(cdir, **merged(ALICE, fetcher='getmail', keep=False))


def test_getmail_id_is_never_a_path_or_hidden():
    assert '/' not in _fetchmail.getmail_id('h.example', '../../etc/passwd')
    assert not _fetchmail.getmail_id('h.example', '.hidden').startswith('.')


def test_exclusive_removes_unlisted_polls_and_getmail_files_keeps_set_and_general(cdir):
    write(cdir, FM, "set daemon 60\npoll old.example user 'o' pass 'x' is 'bob@example.com'\n", 0o600)
    write(cdir, 'getmail/old.cf', '[retriever]\nserver = g.example\nusername = g\npassword = y\n', 0o600)
    write(cdir, 'getmail/getmailrc_general.cf', '[options]\ndelete = false\n')
    result, changed, dummy = apply(cdir, fetches=[item(**ALICE)], exclusive=True)
    assert sorted(result['removed']) == ['g.example/g', 'old.example/o']
    assert read(cdir, FM).startswith('set daemon 60\npoll \'imap.remote.example\'')
    assert read(cdir, 'getmail/old.cf') is None
    assert read(cdir, 'getmail/getmailrc_general.cf') is not None


def test_multi_user_statement_is_refused(cdir):
    write(cdir, FM, "poll imap.remote.example user 'alice.r' pass 'a' is x user 'other' pass 'b' is y\n")
    with pytest.raises(ValidationError, match='several users'):
        apply(cdir, **ALICE)


def test_duplicate_items_are_refused():
    with pytest.raises(ValidationError, match=r'^fetches\[1\]\.username: .* listed twice'):
        _fetchmail.normalize(params(fetches=[item(**ALICE), item(**merged(ALICE, server='IMAP.REMOTE.example'))]))


@pytest.mark.parametrize('name,value,message', [
    ('server', 'a.example\npoll evil', 'line break'),
    ('server', 'a b', 'white space'),
    ('username', "u\nis 'root'", 'line break'),
    ('password', 'p\x00', 'control character'),
    ('password', ' p', 'white space'),
    ('port', 0, '1 to 65535'),
    ('protocol', 'smtp', 'not a protocol'),
    ('target', 'root', 'valid address'),
])
def test_hostile_values_are_refused_naming_the_field(name, value, message):
    with pytest.raises(ValidationError, match=r'^%s: .*%s' % (name, message)) as exc:
        _fetchmail.normalize(params(**merged(ALICE, **{name: value})))
    assert SECRET not in str(exc.value)


def test_password_never_in_error_messages():
    with pytest.raises(ValidationError) as exc:
        _fetchmail.normalize(params(**merged(ALICE, password='Secret-With-Newline\n')))
    assert 'Secret-With-Newline' not in str(exc.value)


def test_fetchmail_refusal_writes_nothing(cdir):
    class Proc:
        returncode = 1
        stdout = b''
        stderr = b'fetchmail: rc:3: syntax error at foo\n'
    seen = {}

    def run(argv, **kwargs):
        seen['argv'] = argv
        with open(argv[-1]) as handle:
            seen['text'] = handle.read()
        seen['mode'] = stat.S_IMODE(os.stat(argv[-1]).st_mode)
        return Proc()
    with pytest.raises(ConfigDirError, match='fetchmail refuses the result.*syntax error'):
        apply(cdir, binary='/usr/bin/fetchmail', run=run, **ALICE)
    assert read(cdir, FM) is None
    assert SECRET not in ' '.join(seen['argv']) and seen['mode'] == 0o600
    assert seen['text'].startswith(_fetchmail.DMS_FETCHMAIL_GENERAL)
    assert not os.path.exists(os.path.dirname(seen['argv'][-1]))


@pytest.mark.skipif(shutil.which('fetchmail') is None, reason='fetchmail is not installed here')
def test_real_fetchmail_accepts_what_the_module_writes(cdir):
    result, changed, dummy = apply(cdir, binary=shutil.which('fetchmail'),
                                   **merged(ALICE, password="it's a \\ \"pw\"", folders=['INBOX', 'a b']))
    assert result['validated'] == [FM]
    out = subprocess.run(['fetchmail', '--configdump', '-f', os.path.join(str(cdir), FM)], capture_output=True,
                         check=True, env=dict(os.environ, HOME=str(cdir))).stdout.decode()
    assert '"password":"it\'s a \\\\ \\"pw\\""' in out or "it's a" in out


def test_cleartext_writes_sslproto_empty_for_fetchmail(cdir):
    apply(cdir, **merged(ALICE, ssl=False, cleartext=True))
    assert read(cdir, FM).rstrip('\n').endswith("here keep sslproto ''")
    apply(cdir, **merged(ALICE, ssl=False))     # STARTTLS: fetchmail 6.4's default without ssl
    assert read(cdir, FM).rstrip('\n').endswith('here keep')


def test_cleartext_rules(cdir):
    with pytest.raises(ValidationError, match=r'^cleartext: contradicts ssl=true'):
        _fetchmail.normalize(params(**merged(ALICE, cleartext=True)))
    with pytest.raises(ValidationError, match=r'^ssl: false with fetcher=getmail logs in without any TLS'):
        _fetchmail.normalize(params(**merged(ALICE, ssl=False, fetcher='getmail')))
    entries, dummy = _fetchmail.normalize(params(**merged(ALICE, ssl=False, cleartext=True, fetcher='getmail')))
    assert entries[0]['cleartext'] is True


def test_fetchmail_message_never_shows_a_password_of_the_file(cdir):
    write(cdir, FM, "poll other.example user 'x' pass 'Disk-Pw-On-Host' is 'bob@example.com'\n", 0o600)

    class Proc:
        returncode = 1
        stdout = b''
        stderr = b"fetchmail: rc:5: syntax error at Disk-Pw-On-Host and Unit-Fetch-Secret-9d2e\n"
    with pytest.raises(ConfigDirError) as exc:
        apply(cdir, binary='/usr/bin/fetchmail', run=lambda argv, **kw: Proc(), **ALICE)
    assert 'Disk-Pw-On-Host' not in str(exc.value) and SECRET not in str(exc.value)
    assert '********' in str(exc.value)
