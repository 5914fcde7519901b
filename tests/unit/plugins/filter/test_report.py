# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report playbook's filters (plugins/filter/report.py)."""
from __future__ import annotations

import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter import report

INFO = {
    'changed': False, 'invocation': {'module_args': {}},
    # dms_info's lean account items: keys only for what the account has (b@ has no quota, restriction or alias).
    'accounts': [{'address': 'a@x.test', 'scheme': 'SHA512-CRYPT', 'quota': '10M', 'restrict': ['send'],
                  'aliases': ['info@x.test'],
                  'usage': {'used_kib': 12, 'limit_kib': 10240, 'percent': 0, 'messages': 2, 'message_limit': None}},
                 {'address': 'b@x.test', 'scheme': 'ARGON2ID', 'extra_fields': True}],
    'aliases': [{'type': 'virtual', 'alias': '@x.test', 'recipients': ['a@x.test'], 'catch_all': True,
                 'self_alias': False},
                {'type': 'regexp', 'alias': '/^a|b$/', 'recipients': ['a@x.test']}],
    'relays': [{'key': '@x.test', 'domain': 'x.test', 'host': 'smtp.r.test', 'port': None, 'exclude': False,
                'credentials': True}],
    'dkim': [{'name': 'mail._domainkey.x.test', 'backend': 'opendkim', 'key_type': 'rsa', 'key_size': 2048}],
    'masters': [{'name': 'admin', 'scheme': 'SHA512-CRYPT'}],
    'sieve': [{'kind': 'user', 'address': 'a@x.test', 'neutral': False},
              {'kind': 'user', 'address': 'b@x.test', 'neutral': True}, {'kind': 'global', 'scope': 'before'}],
    'fetches': [{'fetcher': 'fetchmail', 'file': 'fetchmail.cf', 'server': 'pop.old.test', 'username': 'a',
                 'protocol': 'pop3', 'port': None, 'target': 'a@x.test', 'ssl': True, 'keep': True, 'folders': [],
                 'password_set': True},
                {'fetcher': 'getmail', 'file': 'getmail/bad.cf', 'error': 'no [retriever]'}],
    'drift': {'accounts': {'missing': ['n@x.test'], 'extra': [],
                           'different': [{'address': 'a@x.test', 'fields': ['quota']}]},
              'relays': {'missing': [], 'extra': [], 'different': []}},
    'in_sync': False,
    'live': {'dms_release': 'v16.0.1', 'change_detector': {'applied': False, 'pending': ['postfix-virtual.cf']}},
}


def test_summary_counts_and_drift_per_section():
    summary = report.dms_report_summary(INFO, 'mx1')
    assert {k: summary[k] for k in ('host', 'accounts', 'aliases', 'relays', 'dkim', 'in_sync', 'drift',
                                    'dms_release', 'applied', 'pending')} == {
        'host': 'mx1', 'accounts': 2, 'aliases': 2, 'relays': 1, 'dkim': 1, 'in_sync': False,
        'drift': {'accounts': 2, 'relays': 0}, 'dms_release': 'v16.0.1', 'applied': False,
        'pending': ['postfix-virtual.cf']}
    # A neutral Sieve script (what dms_sieve leaves for state=absent) is no filter; an unreadable fetch file counts.
    assert (summary['masters'], summary['sieve'], summary['fetches']) == (1, 2, 2)
    assert 'invocation' not in summary['info'] and 'changed' not in summary['info']
    with pytest.raises(AnsibleFilterError):
        report.dms_report_summary('x', 'mx1')


def test_row_and_markdown():
    summary = report.dms_report_summary(INFO, 'mx1')
    assert report.dms_report_row(summary).split() == ['mx1', '2', '2', '1', '1', 'no', 'v16.0.1', 'no',
                                                      '(pending:', 'postfix-virtual.cf)']
    md = report.dms_report_markdown([summary])
    assert '| mx1 | 2 | 2 | 1 | 1 | no | v16.0.1 | no (pending: postfix-virtual.cf) |' in md
    assert '| a@x.test | 10M | 12K / 10M [0%] | 2 | send | info@x.test |' in md
    assert '| b@x.test | - | - | - | - | - |' in md
    assert '| regexp | `/^a\\|b$/` | a@x.test |  |' in md and '| virtual | `@x.test` | a@x.test | catch-all |' in md
    assert '| `@x.test` | smtp.r.test:25 | yes | no |' in md
    assert '| admin | SHA512-CRYPT |' in md
    assert '| a@x.test | yes |' in md and '| b@x.test | none (neutral script) |' in md
    assert '| every account (before) | yes |' in md
    assert '| fetchmail | pop.old.test | a | pop3 | a@x.test | yes |' in md
    assert '| getmail | `getmail/bad.cf` | no [retriever] | | | |' in md
    assert '- accounts missing: `n@x.test`' in md and '- accounts different: `a@x.test` (quota)' in md
    in_sync = dict(INFO, drift={'accounts': {'missing': [], 'extra': [], 'different': []}}, in_sync=True)
    assert 'None: the host has what the inventory says.' in report.dms_report_markdown(
        [report.dms_report_summary(in_sync, 'mx1')])


@pytest.mark.parametrize('kib', [0, 1, 3, 12, 1000, 5120, 10240, 123456, 9999999])
def test_sizes_as_setup_email_list_shows_them(kib):
    """numfmt --to=iec of the bytes, as DMS's listmailuser prints them."""
    expected = subprocess.run(['numfmt', '--to=iec', str(kib * 1024)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert report._size(kib) == expected  # pylint: disable=protected-access
    assert report._size(None) == '~'  # pylint: disable=protected-access
