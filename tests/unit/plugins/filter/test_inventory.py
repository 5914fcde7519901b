# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter.inventory import (
    dms_dkim_group_errors, dms_dkim_items, dms_inventory_errors, dms_mail_addresses, dms_mail_domains,
    dms_survey_entries,
)

ACCOUNTS = [{'address': 'alice@example.com', 'password': 'secret-a'},
            {'address': 'bob@example.org', 'password': 'secret-b'}]
ALIASES = [{'alias': 'info@example.com', 'recipients': ['alice@example.com']},
           {'alias': '@example.org', 'recipients': ['bob@example.org']}]


def data(**extra):
    base = {'dms_accounts': list(ACCOUNTS), 'dms_aliases': list(ALIASES), 'dms_dkim': [{'domain': 'example.com'}],
            'dms_relays': [{'domain': 'example.org', 'host': 'smtp.relay.test'}]}
    base.update(extra)
    return base


def test_consistent_inventory_has_no_errors():
    assert dms_inventory_errors(data()) == []
    assert dms_inventory_errors({}) == []


@pytest.mark.parametrize('extra, message', [
    ({'dms_aliases': [{'alias': 'Alice@Example.com', 'recipients': ['bob@example.org']}]},
     'dms_aliases[0].alias: alice@example.com is also an account (dms_accounts[0])'),
    ({'dms_dkim': [{'domain': 'other.example'}]},
     'dms_dkim[0].domain: no account or alias uses the domain other.example'),
    ({'dms_relays': [{'domain': '@other.example', 'host': 'smtp.relay.test'}]},
     'dms_relays[0].domain: no account or alias uses the domain other.example'),
    ({'dms_accounts': ACCOUNTS + [{'address': 'ALICE@example.com'}]},
     'dms_accounts[2].address: alice@example.com is listed again (first in dms_accounts[0].address)'),
    ({'dms_aliases': ALIASES + [{'name': 'info@example.com', 'recipients': ['x@example.net']}]},
     'dms_aliases[2].alias: info@example.com is listed again (first in dms_aliases[0].alias)'),
    ({'dms_dkim': [{'domain': 'example.com'}, {'domain': 'EXAMPLE.com', 'selector': 'two'}]},
     'dms_dkim[1].domain: example.com is listed again'),
    ({'dms_accounts': [{'password': 'x'}]}, 'dms_accounts[0]: has no address'),
    ({'dms_aliases': [{'recipients': ['a@b.example']}]}, 'dms_aliases[0]: has no alias'),
    ({'dms_accounts': [{'address': 'not-an-address'}]}, 'dms_accounts[0].address'),
    ({'dms_dkim': [{'selector': 'x'}]}, 'dms_dkim[0].domain: is missing'),
    ({'dms_accounts': 'alice@example.com'}, 'dms_accounts: expected a list of dicts, got str'),
    ({'dms_aliases': ['info@example.com']}, "dms_aliases[0]: expected a dict, got 'info@example.com'"),
])
def test_each_problem_is_named(extra, message):
    errors = dms_inventory_errors(data(**extra))
    assert any(message in e for e in errors), errors


def test_messages_never_carry_passwords():
    errors = dms_inventory_errors(data(dms_aliases=[{'alias': 'alice@example.com', 'recipients': ['x@y.example']}],
                                       dms_accounts=ACCOUNTS + [{'address': 'alice@example.com', 'password': 'p2'}]))
    assert errors
    assert not [e for e in errors if 'secret' in e or 'p2' in e]


@pytest.mark.parametrize('extra', [
    # A self-alias (the account as its only recipient) is what catch-all safety writes: fine.
    {'dms_aliases': ALIASES + [{'alias': 'alice@example.com', 'recipients': ['alice@example.com']}]},
    # Absent entries do not count.
    {'dms_aliases': ALIASES + [{'alias': 'alice@example.com', 'recipients': ['x@y.example'], 'state': 'absent'}]},
    {'dms_accounts': ACCOUNTS + [{'address': 'info@example.com', 'state': 'absent'}]},
    # Regexp aliases are not compared with accounts.
    {'dms_aliases': ALIASES + [{'alias': '/^alice@example.com$/', 'type': 'regexp', 'recipients': ['x@y.example']}]},
    # A relay item without a domain holds the default relay host's credentials.
    {'dms_relays': [{'host': 'smtp.relay.test', 'username': 'u', 'password': 'p'}]},
    # A domain used only by an alias (here a catch-all) is a mail domain.
    {'dms_dkim': [{'domain': 'example.org'}]},
    # An absent DKIM key of an unused domain is a removal: fine.
    {'dms_dkim': [{'domain': 'gone.example', 'state': 'absent'}]},
])
def test_what_is_not_a_problem(extra):
    assert dms_inventory_errors(data(**extra)) == []


def test_an_absent_account_does_not_make_its_domain_a_mail_domain():
    errors = dms_inventory_errors({'dms_accounts': [{'address': 'a@gone.example', 'state': 'absent'}],
                                   'dms_dkim': [{'domain': 'gone.example'}]})
    assert errors and 'no account or alias uses the domain gone.example' in errors[0]


# -- survey ------------------------------------------------------------------------------------------------------


def test_survey_entries_from_typical_answers():
    out = dms_survey_entries({'dms_account_address': ' dave@example.com ', 'dms_account_password': 'pw',
                              'dms_account_quota': '', 'dms_account_restrict': 'send, receive',
                              'dms_account_state': '', 'dms_alias_address': 'sales@example.com',
                              'dms_alias_recipients': 'a@example.com,\nb@example.com  c@example.com',
                              'dms_alias_append': 'yes', 'dms_alias_state': ''})
    assert out['accounts'] == [{'address': 'dave@example.com', 'state': 'present', 'password': 'pw',
                                'restrict': ['send', 'receive']}]
    assert out['aliases'] == [{'alias': 'sales@example.com', 'state': 'present', 'append': True,
                               'recipients': ['a@example.com', 'b@example.com', 'c@example.com']}]


def test_empty_answers_are_no_entries():
    assert dms_survey_entries({'dms_account_address': '', 'dms_account_password': '', 'dms_alias_address': '  ',
                               'dms_alias_recipients': ''}) == {'accounts': [], 'aliases': []}
    assert dms_survey_entries({}) == {'accounts': [], 'aliases': []}


def test_survey_restrict_none_clears_and_absent_needs_no_password():
    out = dms_survey_entries({'dms_account_address': 'a@example.com', 'dms_account_restrict': ['none']})
    assert out['accounts'][0]['restrict'] == []
    out = dms_survey_entries({'dms_account_address': 'a@example.com', 'dms_account_state': 'absent',
                              'dms_account_password': 'ignored', 'dms_account_quota': '1G'})
    assert out['accounts'] == [{'address': 'a@example.com', 'state': 'absent'}]
    out = dms_survey_entries({'dms_alias_address': 'x@example.com', 'dms_alias_state': 'absent'})
    assert out['aliases'] == [{'alias': 'x@example.com', 'state': 'absent'}]


@pytest.mark.parametrize('answers, message', [
    ({'dms_account_password': 'pw'}, 'dms_account_password is set but dms_account_address is not'),
    ({'dms_alias_recipients': 'a@example.com'}, 'dms_alias_recipients is set but dms_alias_address is not'),
    ({'dms_alias_address': 'x@example.com'}, 'dms_alias_recipients: an alias needs at least one recipient'),
    ({'dms_account_address': 'a@example.com', 'dms_account_state': 'gone'}, "dms_account_state: 'gone'"),
    ({'dms_alias_address': 'x@example.com', 'dms_alias_recipients': 'a@b.example', 'dms_alias_append': 'maybe'},
     'dms_alias_append'),
    ({'dms_alias_address': 'x@example.com', 'dms_alias_recipients': 5}, 'dms_alias_recipients: expected a list'),
])
def test_survey_answers_that_make_no_sense(answers, message):
    with pytest.raises(AnsibleFilterError) as err:
        dms_survey_entries(answers)
    assert message in str(err.value)
    assert 'pw' not in str(err.value).replace('dms_account_password', '')


@pytest.mark.parametrize('survey, message', [
    ({'dms_account_address': 'alice@example.com', 'dms_account_password': 'x'},
     'dms_account_address: alice@example.com is managed by the inventory (dms_accounts[0])'),
    ({'dms_account_address': 'info@example.com', 'dms_account_password': 'x'},
     'dms_account_address: info@example.com is an alias in the inventory (dms_aliases[0])'),
    ({'dms_alias_address': 'info@example.com', 'dms_alias_recipients': 'bob@example.org'},
     'dms_alias_address: info@example.com is managed by the inventory (dms_aliases[0])'),
    ({'dms_alias_address': 'bob@example.org', 'dms_alias_recipients': 'alice@example.com'},
     'dms_alias_address: bob@example.org is also an account (dms_accounts[1])'),
    ({'dms_account_address': 'new@example.com', 'dms_account_password': 'x',
      'dms_alias_address': 'new@example.com', 'dms_alias_recipients': 'alice@example.com'},
     'dms_alias_address: new@example.com is also an account (dms_account_address)'),
    ({'dms_account_address': 'new@example.com', 'dms_account_password': 'x', 'dms_accounts_exclusive': True},
     'dms_accounts_exclusive is true for this host'),
    ({'dms_alias_address': 'new@example.com', 'dms_alias_recipients': 'alice@example.com',
      'dms_aliases_exclusive': 'true'}, 'dms_aliases_exclusive is true for this host'),
])
def test_survey_conflicts_with_the_inventory(survey, message):
    errors = dms_inventory_errors(data(**survey))
    assert any(message in e for e in errors), errors


def test_survey_additions_that_fit_the_inventory():
    assert dms_inventory_errors(data(dms_account_address='new@example.com', dms_account_password='x',
                                     dms_alias_address='sales@example.com',
                                     dms_alias_recipients='alice@example.com new@example.com')) == []
    # A survey account's domain counts as a mail domain.
    assert dms_inventory_errors(data(dms_account_address='a@new.example', dms_account_password='x',
                                     dms_dkim=[{'domain': 'new.example'}])) == []


# -- domains, addresses, group checks ---------------------------------------------------------------------------


def test_mail_domains_and_addresses():
    values = {'dms_accounts': ACCOUNTS + [{'address': 'x@gone.example', 'state': 'absent'}],
              'dms_aliases': ALIASES + [{'alias': '/^a/', 'type': 'regexp', 'recipients': ['a@re.example']},
                                        {'alias': 'z@Alias.Example', 'recipients': ['alice@example.com']}]}
    assert dms_mail_domains(values) == ['alias.example', 'example.com', 'example.org']
    assert dms_mail_addresses(values) == ['@example.org', 'alice@example.com', 'bob@example.org',
                                          'info@example.com', 'z@alias.example']
    assert dms_mail_domains({}) == [] and dms_mail_domains(None) == []


def test_dkim_group_errors():
    one = [{'domain': 'example.com'}]
    assert dms_dkim_group_errors([{'host': 'a', 'shared': True, 'dkim': one},
                                  {'host': 'b', 'shared': 'true', 'dkim': one}]) == []
    assert dms_dkim_group_errors([{'host': 'a', 'shared': False, 'dkim': [{'domain': 'example.com', 'selector': 'a'}]},
                                  {'host': 'b', 'shared': False, 'dkim': [{'domain': 'example.com', 'selector': 'b'}]}]) == []
    assert dms_dkim_group_errors([{'host': 'a', 'shared': False, 'dkim': one}]) == []
    assert dms_dkim_group_errors([{'host': 'a', 'dkim': one},
                                  {'host': 'b', 'dkim': [{'domain': 'example.com', 'state': 'absent'}]}]) == []
    errors = dms_dkim_group_errors([{'host': 'a', 'shared': True, 'dkim': one},
                                    {'host': 'b', 'shared': False, 'dkim': [{'domain': 'EXAMPLE.com',
                                                                             'selector': 'mail'}]}])
    assert errors == ['the hosts a, b all sign example.com with the selector mail, but dms_dkim_shared is not true '
                      'for b, so their keys would differ under the one record mail._domainkey.example.com. Set '
                      'dms_dkim_shared: true for these hosts, or give each host its own selector']


RSPAMD_ID = 'uid=100(_rspamd) gid=101(_rspamd) groups=101(_rspamd)'


@pytest.mark.parametrize('env,backend', [
    ({}, 'opendkim'),
    ({'ENABLE_RSPAMD': 1}, 'opendkim'),            # OpenDKIM stays on by default: DMS keeps using it
    ({'ENABLE_RSPAMD': 1, 'ENABLE_OPENDKIM': 0}, 'rspamd'),
    ({'ENABLE_RSPAMD': '1', 'ENABLE_OPENDKIM': '0'}, 'rspamd'),
    ({'ENABLE_RSPAMD': 0, 'ENABLE_OPENDKIM': 0}, 'opendkim'),
])
def test_dkim_items_follow_the_env_as_dms_setup_does(env, backend):
    items = dms_dkim_items([{'domain': 'example.com'}], env, RSPAMD_ID)
    assert items[0]['backend'] == backend
    if backend == 'rspamd':
        assert (items[0]['key_owner'], items[0]['key_group']) == (100, 101)
    else:
        assert 'key_owner' not in items[0]


def test_dkim_items_keep_what_an_item_sets():
    env = {'ENABLE_RSPAMD': 1, 'ENABLE_OPENDKIM': 0}
    items = dms_dkim_items([{'domain': 'a.example', 'backend': 'opendkim'},
                            {'domain': 'b.example', 'key_owner': 7, 'key_group': 8},
                            {'domain': 'c.example'}], env, '')
    # a.example names OpenDKIM, which is off here: its key signs nothing (in_use false, not to be published).
    assert items[0] == {'domain': 'a.example', 'backend': 'opendkim', 'in_use': False}
    assert items[1] == {'domain': 'b.example', 'backend': 'rspamd', 'key_owner': 7, 'key_group': 8, 'in_use': True}
    assert items[2] == {'domain': 'c.example', 'backend': 'rspamd', 'in_use': True}   # ids unknown: no owner


def test_dkim_items_in_use_follows_the_signers():
    items = dms_dkim_items([{'domain': 'a.example'}, {'domain': 'b.example', 'backend': 'rspamd'}], {})
    assert [i['in_use'] for i in items] == [True, False]
