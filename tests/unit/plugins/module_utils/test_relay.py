# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the dms_relay logic (plugins/module_utils/_relay.py) against real temp config dirs."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.dms.mailserver.plugins.module_utils import _relay
from ansible_collections.dms.mailserver.plugins.module_utils._common import mode_diffs
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError

RELAYMAP = 'postfix-relaymap.cf'
SASL = 'postfix-sasl-password.cf'
SECRET = 'Unit-Relay-Secret-7f3a'


def params(**kwargs):
    base = dict(domain=None, host=None, port=None, username=None, password=None, exclude=None,
                state='present', relays=None, exclusive=False)
    base.update(kwargs)
    return base


def item(**kwargs):
    base = dict(domain=None, host=None, port=None, username=None, password=None, exclude=None, state=None)
    base.update(kwargs)
    return base


def apply(config_dir, check=False, **kwargs):
    """Run normalize + plan + commit like the module does; return (result, changed_files, diff)."""
    p = params(**kwargs)
    entries, dummy = _relay.normalize(p)
    with ConfigDir(str(config_dir), check_mode=check) as cfg:
        result = _relay.plan(cfg, p, entries)
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
    with open(path, 'wb') as handle:
        handle.write(text.encode())
    os.chmod(path, mode)


def mode_of(config_dir, name):
    return stat.S_IMODE(os.stat(os.path.join(str(config_dir), name)).st_mode)


# -- normalize -------------------------------------------------------------------


def test_domain_entry_defaults_port_25_and_brackets_host():
    entries, dummy = _relay.normalize(params(domain='Example.COM', host='SMTP.Relay.example'))
    assert entries[0]['key'] == '@example.com'
    assert entries[0]['relay'] == 'set'
    assert entries[0]['relay_value'] == '[smtp.relay.example]:25'
    assert entries[0]['creds'] is None


def test_leading_at_accepted_and_ipv6_and_ipv4_hosts():
    entries, dummy = _relay.normalize(params(relays=[
        item(domain='@a.example', host='2001:DB8:0:0::25', port=587),
        item(domain='b.example', host='192.0.2.25', port='2525'),
    ]))
    assert [e['key'] for e in entries] == ['@a.example', '@b.example']
    assert entries[0]['relay_value'] == '[2001:db8::25]:587'
    assert entries[1]['relay_value'] == '[192.0.2.25]:2525'


def test_host_keyed_credentials_item():
    entries, dummy = _relay.normalize(params(host='email-smtp.eu-west-1.amazonaws.com', port=587,
                                             username='AKIAEXAMPLE', password=SECRET))
    e = entries[0]
    assert (e['kind'], e['key'], e['relay'], e['creds']) == (
        'host', '[email-smtp.eu-west-1.amazonaws.com]:587', None, 'set')
    assert e['creds_value'] == 'AKIAEXAMPLE:' + SECRET


def test_password_with_inner_space_is_representable():
    entries, dummy = _relay.normalize(params(domain='a.example', username='u', password='pass word'))
    assert entries[0]['creds_value'] == 'u:pass word'


BAD_INPUTS = [
    # (module params, field named in the message, words of the problem)
    (dict(domain='exa mple.com', host='smtp.example.com'), 'domain:', 'white space'),
    (dict(domain='münchen.de', host='smtp.example.com'), 'domain:', 'non-ASCII'),
    (dict(domain='example..com', host='smtp.example.com'), 'domain:', 'empty label'),
    (dict(domain='example.com', host='smtp.example.com', port=0), 'port:', '1 to 65535'),
    (dict(domain='example.com', host='smtp.example.com', port=70000), 'port:', '1 to 65535'),
    (dict(domain='example.com', host='smtp.example.com', port='abc'), 'port:', '1 to 65535'),
    (dict(domain='example.com', host='smtp.example.com', port=True), 'port:', '1 to 65535'),
    (dict(domain='example.com', host='smtp.example.com', port=25.5), 'port:', '1 to 65535'),
    (dict(domain='example.com', host='smtp relay.example.com'), 'host:', 'white space'),
    (dict(domain='example.com', host='[smtp.example.com]'), 'host:', 'without brackets'),
    (dict(domain='example.com', host='smtp.example.com:587'), 'host:', 'port option'),
    (dict(domain='example.com', host='999.1.1.1'), 'host:', 'IPv4'),
    (dict(domain='example.com', host='smtp.example.com\n'), 'host:', 'line break'),
    (dict(domain='example.com', port=587), 'port:', 'needs host'),
    (dict(domain='example.com', password=SECRET), 'password:', 'needs username'),
    (dict(domain='example.com', username='user'), 'username:', 'needs password'),
    (dict(domain='example.com', username='us:er', password=SECRET), 'username:', 'contains ":"'),
    (dict(domain='example.com', username=' user', password=SECRET), 'username:', 'white space'),
    (dict(domain='example.com', username='us\ter', password=SECRET), 'username:', 'control character'),
    (dict(domain='example.com', username='user', password=SECRET + '\n'), 'password:', 'line break'),
    (dict(domain='example.com', username='user', password=SECRET + '\x00'), 'password:', 'control character'),
    (dict(domain='example.com', username='user', password=SECRET + '\x85'), 'password:', 'control character'),
    (dict(domain='example.com', username='user', password=' ' + SECRET), 'password:', 'white space'),
    # Found by tests/reliability/test_parsers.py: Postfix keeps a trailing no-break space, the reader did not.
    (dict(domain='example.com', username='user', password=SECRET + '\xa0'), 'password:', 'white space'),
    (dict(domain='example.com', username='user', password='\u3000' + SECRET), 'password:', 'white space'),
    (dict(domain='example.com', username='\xa0user', password=SECRET), 'username:', 'white space'),
    (dict(domain='example.com', username='user', password=''), 'password:', 'must not be empty'),
    (dict(domain='example.com', host='smtp.example.com', exclude=True), 'exclude:', 'contradicts host'),
    (dict(domain='example.com', exclude=True, username='u', password=SECRET), 'username:', 'contradicts exclude'),
    (dict(domain='example.com', host='', port=25), 'port:', 'host=""'),
    (dict(domain='example.com', username='', password=SECRET), 'password:', 'username=""'),
    (dict(domain='example.com', host='smtp.example.com', state='absent'), 'host:', 'state=absent'),
    (dict(domain='example.com', password=SECRET, state='absent'), 'password:', 'state=absent'),
    (dict(host='smtp.example.com', port=587), 'username:', 'without domain'),
    (dict(host='smtp.example.com', exclude=True, username='u', password=SECRET), 'exclude:', 'needs domain'),
    (dict(host='smtp.example.com', username='', password=None), 'username:', 'state=absent'),
    (dict(host='', username='u', password=SECRET), 'domain:', 'is required'),
    (dict(domain='example.com', exclusive=True), 'exclusive:', 'relays list'),
    # A domain alone asks for nothing: a forgotten host or credentials must not pass silently.
    (dict(domain='example.com'), 'domain:', 'expected host (the relay for its mail), username and password'),
    (dict(domain='@example.com', host=None, username=None), 'domain:', '@example.com is given alone'),
]


@pytest.mark.parametrize('kwargs,field,problem', BAD_INPUTS)
def test_bad_single_inputs_name_the_field(kwargs, field, problem):
    with pytest.raises(ValidationError) as info:
        _relay.normalize(params(**kwargs))
    msg = str(info.value)
    assert msg.startswith(field), msg
    assert problem in msg, msg
    assert SECRET not in msg


def test_bad_list_item_names_its_index():
    relays = [item(domain='a.example', host='smtp.example.com'),
              item(domain='b.example', host='smtp.example.com'),
              item(domain='c.example', host='smtp.example.com', port=70000)]
    with pytest.raises(ValidationError) as info:
        _relay.normalize(params(relays=relays))
    assert str(info.value).startswith('relays[2].port: 70000 is not a valid port')


def test_key_listed_twice_is_refused():
    relays = [item(domain='A.example', host='smtp.example.com'), item(domain='@a.example', exclude=True)]
    with pytest.raises(ValidationError) as info:
        _relay.normalize(params(relays=relays))
    assert str(info.value) == 'relays[1].domain: @a.example is listed twice (also at relays[0].domain)'


# -- plan: the CLI's formats ------------------------------------------------------


def test_cli_sequence_add_domain_add_auth_exclude_domain(tmp_path):
    """Each step leaves the bytes DMS's setup relay commands leave (dms-behaviour.md §1, §2.12-2.14)."""
    # setup relay add-domain example.com smtp.relay1.com   (port defaults to 25)
    apply(tmp_path, domain='example.com', host='smtp.relay1.com')
    assert read(tmp_path, RELAYMAP) == '@example.com [smtp.relay1.com]:25\n'
    assert read(tmp_path, SASL) is None
    # setup relay add-domain example.com smtp.relay2.com 587   (replaces, does not duplicate)
    apply(tmp_path, domain='example.com', host='smtp.relay2.com', port=587)
    assert read(tmp_path, RELAYMAP) == '@example.com [smtp.relay2.com]:587\n'
    # setup relay add-auth example.com user1 pass1
    apply(tmp_path, domain='example.com', username='user1', password='pass1')
    assert read(tmp_path, SASL) == '@example.com user1:pass1\n'
    assert read(tmp_path, RELAYMAP) == '@example.com [smtp.relay2.com]:587\n'
    # setup relay add-auth example.com user2 pass2   (replaces)
    apply(tmp_path, domain='example.com', username='user2', password='pass2')
    assert read(tmp_path, SASL) == '@example.com user2:pass2\n'
    # setup relay exclude-domain other.com   (new opt-out: trailing space)
    apply(tmp_path, domain='other.com', exclude=True)
    assert read(tmp_path, RELAYMAP) == '@example.com [smtp.relay2.com]:587\n@other.com \n'
    # setup relay exclude-domain example.com   (the relay line becomes the opt-out, credentials stay)
    apply(tmp_path, domain='example.com', exclude=True)
    assert read(tmp_path, RELAYMAP) == '@example.com \n@other.com \n'
    assert read(tmp_path, SASL) == '@example.com user2:pass2\n'
    # setup relay add-domain example.com smtp.relay2.com 587   (turns the opt-out back)
    apply(tmp_path, domain='example.com', host='smtp.relay2.com', port=587)
    assert read(tmp_path, RELAYMAP) == '@example.com [smtp.relay2.com]:587\n@other.com \n'
    assert mode_of(tmp_path, SASL) == 0o600
    assert mode_of(tmp_path, RELAYMAP) == 0o644


def test_existing_cli_lines_are_replaced_in_place_not_duplicated(tmp_path):
    write(tmp_path, RELAYMAP, '# relays\n@a.example [old.example]:25\n\n@b.example [b.relay]:25\n')
    write(tmp_path, SASL, '# creds\n@a.example olduser:oldpass\n', 0o600)
    result, changed, dummy = apply(tmp_path, domain='a.example', host='new.example', port=587,
                                   username='newuser', password='newpass')
    assert read(tmp_path, RELAYMAP) == '# relays\n@a.example [new.example]:587\n\n@b.example [b.relay]:25\n'
    assert read(tmp_path, SASL) == '# creds\n@a.example newuser:newpass\n'
    assert result == dict(created=[], updated=['@a.example'], removed=[], _warnings=[])
    assert changed == [RELAYMAP, SASL]


def test_handwritten_optout_without_space_is_read_as_optout(tmp_path):
    text = '# opt-outs as in DMS docs\n@domain3.com\n'
    write(tmp_path, RELAYMAP, text)
    result, changed, dummy = apply(tmp_path, domain='domain3.com', exclude=True)
    assert changed == []
    assert read(tmp_path, RELAYMAP) == text
    assert result['created'] == result['updated'] == []


def test_exclude_false_removes_only_an_optout(tmp_path):
    write(tmp_path, RELAYMAP, '@a.example \n@b.example [relay.example]:25\n@c.example\n')
    apply(tmp_path, relays=[item(domain='a.example', exclude=False), item(domain='b.example', exclude=False),
                            item(domain='c.example', exclude=False)])
    assert read(tmp_path, RELAYMAP) == '@b.example [relay.example]:25\n'


def test_empty_host_and_empty_username_remove_one_part_each(tmp_path):
    write(tmp_path, RELAYMAP, '@a.example [relay.example]:587\n@b.example [relay.example]:587\n')
    write(tmp_path, SASL, '@a.example u:p\n@b.example u:p\n', 0o600)
    result, dummy, dummy = apply(tmp_path, relays=[item(domain='a.example', host=''),
                                                   item(domain='b.example', username='')])
    assert read(tmp_path, RELAYMAP) == '@b.example [relay.example]:587\n'
    assert read(tmp_path, SASL) == '@a.example u:p\n'
    assert result['updated'] == ['@a.example', '@b.example']


def test_absent_removes_relay_optout_and_credentials(tmp_path):
    write(tmp_path, RELAYMAP, '# keep\n@a.example [relay.example]:587\n@b.example \n')
    write(tmp_path, SASL, '@a.example u:p\n[relay.example]:587 v:q\n', 0o600)
    result, dummy, dummy = apply(tmp_path, relays=[
        item(domain='a.example', state='absent'), item(domain='b.example', state='absent'),
        item(host='relay.example', port=587, state='absent'), item(domain='gone.example', state='absent')])
    assert read(tmp_path, RELAYMAP) == '# keep\n'
    assert read(tmp_path, SASL) == ''
    assert result['removed'] == ['@a.example', '@b.example', '[relay.example]:587']


def test_host_keyed_credentials_go_only_to_the_sasl_file(tmp_path):
    result, changed, dummy = apply(tmp_path, host='email-smtp.us-west-2.amazonaws.com', port=2587,
                                   username='aws-user', password='secret')
    assert read(tmp_path, SASL) == '[email-smtp.us-west-2.amazonaws.com]:2587 aws-user:secret\n'
    assert read(tmp_path, RELAYMAP) is None
    assert changed == [SASL]
    assert result['created'] == ['[email-smtp.us-west-2.amazonaws.com]:2587']


def test_keys_match_case_insensitively_and_keep_their_spelling(tmp_path):
    write(tmp_path, RELAYMAP, '@Example.COM\t[SMTP.Relay.example]:587\n@Other.example [a.example]:25\n')
    result, changed, dummy = apply(tmp_path, relays=[item(domain='example.com', host='smtp.relay.example', port=587),
                                                     item(domain='other.example', host='b.example')])
    assert read(tmp_path, RELAYMAP) == '@Example.COM\t[SMTP.Relay.example]:587\n@Other.example [b.example]:25\n'
    assert result['updated'] == ['@other.example']


def test_duplicate_lines_of_a_key_are_reduced_to_one(tmp_path):
    write(tmp_path, RELAYMAP, '@a.example [x.example]:25\n# c\n@a.example [y.example]:25\n')
    apply(tmp_path, domain='a.example', host='x.example')
    assert read(tmp_path, RELAYMAP) == '@a.example [x.example]:25\n# c\n'


def test_optout_followed_by_relay_duplicate_keeps_the_optout(tmp_path):
    """DMS drops value-less lines before Postfix sees the map, so a later relay line would win: drop it."""
    write(tmp_path, RELAYMAP, '@a.example \n@a.example [x.example]:25\n')
    apply(tmp_path, domain='a.example', exclude=True)
    assert read(tmp_path, RELAYMAP) == '@a.example \n'


def test_exclusive_removes_unnamed_keys_keeps_comments_and_unnamed_parts(tmp_path):
    write(tmp_path, RELAYMAP, '# relays\n@a.example [x.example]:25\n@old.example [x.example]:25\n'
                              'user@c.example [x.example]:25\n\n@gone.example \n')
    write(tmp_path, SASL, '# creds\n@a.example u:p\n@old.example u:p\n[x.example]:25 h:k\n', 0o600)
    result, dummy, dummy = apply(tmp_path, exclusive=True, relays=[
        item(domain='a.example', host='x.example'), item(host='x.example', port=25, username='h', password='k')])
    assert read(tmp_path, RELAYMAP) == '# relays\n@a.example [x.example]:25\n\n'
    assert read(tmp_path, SASL) == '# creds\n@a.example u:p\n[x.example]:25 h:k\n'
    assert result['removed'] == ['@old.example', 'user@c.example', '@gone.example']
    assert result['created'] == result['updated'] == []


def test_exclusive_with_empty_list_clears_both_files(tmp_path):
    write(tmp_path, RELAYMAP, '# only comments stay\n@a.example [x.example]:25\n')
    write(tmp_path, SASL, '@a.example u:p\n', 0o600)
    result, dummy, dummy = apply(tmp_path, exclusive=True, relays=[])
    assert read(tmp_path, RELAYMAP) == '# only comments stay\n'
    assert read(tmp_path, SASL) == ''
    assert result['removed'] == ['@a.example']


def test_second_run_changes_nothing(tmp_path):
    kwargs = dict(relays=[item(domain='a.example', host='x.example', port=587, username='u', password='p w'),
                          item(domain='b.example', exclude=True),
                          item(host='2001:db8::1', port=587, username='v', password='q')])
    result, changed, dummy = apply(tmp_path, **kwargs)
    assert changed == [RELAYMAP, SASL]
    assert result['created'] == ['@a.example', '@b.example', '[2001:db8::1]:587']
    before = (read(tmp_path, RELAYMAP), read(tmp_path, SASL))
    result, changed, diff = apply(tmp_path, **kwargs)
    assert changed == [] and diff == []
    assert result['created'] == result['updated'] == result['removed'] == []
    assert (read(tmp_path, RELAYMAP), read(tmp_path, SASL)) == before


def test_check_mode_predicts_and_writes_nothing(tmp_path):
    write(tmp_path, RELAYMAP, '@a.example [old.example]:25\n')
    kwargs = dict(relays=[item(domain='a.example', host='new.example'),
                          item(domain='b.example', username='u', password=SECRET)])
    predicted = apply(tmp_path, check=True, **kwargs)
    assert read(tmp_path, RELAYMAP) == '@a.example [old.example]:25\n'
    assert read(tmp_path, SASL) is None
    actual = apply(tmp_path, **kwargs)
    assert predicted == actual
    assert predicted[1] == [RELAYMAP, SASL]


def test_diff_masks_passwords_with_numbered_placeholders(tmp_path):
    write(tmp_path, SASL, '@a.example u:Old-Secret-1\n', 0o600)
    dummy, dummy, diff = apply(tmp_path, relays=[item(domain='a.example', username='u', password=SECRET),
                                                 item(domain='b.example', username='v', password=SECRET)])
    text = repr(diff)
    assert SECRET not in text and 'Old-Secret-1' not in text
    sasl = [d for d in diff if d['after_header'] == SASL][0]
    assert sasl['before'] == '@a.example u:<password #1 masked>\n'
    assert sasl['after'] == '@a.example u:<password #2 masked>\n@b.example v:<password #2 masked>\n'


def test_warns_about_credentials_of_an_opted_out_domain(tmp_path):
    write(tmp_path, SASL, '@a.example u:p\n', 0o600)
    result, dummy, dummy = apply(tmp_path, domain='a.example', exclude=True)
    assert len(result['_warnings']) == 1
    assert result['_warnings'][0].startswith('domain: @a.example opts out of relaying')


# -- the SASL file's mode -----------------------------------------------------------


def test_sasl_file_created_0600(tmp_path):
    apply(tmp_path, domain='a.example', username='u', password='p')
    assert mode_of(tmp_path, SASL) == 0o600


@pytest.mark.parametrize('wide', [0o644, 0o640, 0o666])
def test_wide_sasl_file_is_narrowed_even_when_content_is_unchanged(tmp_path, wide):
    write(tmp_path, SASL, '@a.example u:p\n', wide)
    result, changed, diff = apply(tmp_path, check=True, domain='a.example', username='u', password='p')
    assert changed == [SASL]
    assert diff == [{'before_header': SASL + ' (mode)', 'after_header': SASL + ' (mode)',
                     'before': 'mode %04o\n' % wide, 'after': 'mode 0600\n'}]
    assert mode_of(tmp_path, SASL) == wide  # check mode changed nothing
    result, changed, dummy = apply(tmp_path, domain='a.example', username='u', password='p')
    assert changed == [SASL]
    assert result['updated'] == []
    assert mode_of(tmp_path, SASL) == 0o600
    assert read(tmp_path, SASL) == '@a.example u:p\n'
    assert apply(tmp_path, domain='a.example', username='u', password='p')[1] == []


def test_wide_sasl_file_is_narrowed_by_a_run_that_only_touches_the_relaymap(tmp_path):
    write(tmp_path, SASL, '@a.example u:p\n', 0o644)
    dummy, changed, dummy = apply(tmp_path, domain='a.example', host='x.example')
    assert changed == [RELAYMAP, SASL]
    assert mode_of(tmp_path, SASL) == 0o600


def test_rewritten_sasl_file_is_0600(tmp_path):
    write(tmp_path, SASL, '@a.example u:p\n', 0o664)
    apply(tmp_path, domain='a.example', username='u', password='new')
    assert mode_of(tmp_path, SASL) == 0o600
    assert read(tmp_path, SASL) == '@a.example u:new\n'


def test_domain_alone_fails_and_keeps_its_lines_under_exclusive(tmp_path):
    write(tmp_path, RELAYMAP, '@a.example [x.example]:25\n@b.example [x.example]:25\n')
    write(tmp_path, SASL, '@a.example u:p\n@b.example u:p\n', 0o600)
    for kwargs in (dict(domain='a.example'), dict(relays=[item(domain='a.example')])):
        with pytest.raises(ValidationError) as info:
            apply(tmp_path, **kwargs)
        assert 'is given alone, which asks for nothing' in str(info.value)
    assert str(info.value).startswith('relays[0].domain: @a.example is given alone')
    result, dummy, dummy = apply(tmp_path, exclusive=True, relays=[item(domain='a.example')])
    assert read(tmp_path, RELAYMAP) == '@a.example [x.example]:25\n'
    assert read(tmp_path, SASL) == '@a.example u:p\n'
    assert result['removed'] == ['@b.example'] and result['updated'] == []
