# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks site, accounts, dns and validate, run with ansible-playbook against config-only hosts.

Two inventory hosts (mx1, mx2) connect locally and each has its own base directory under a temp dir;
dms_manage_container is false, so the mailserver role writes the config volume and runs no container (the
multihost molecule scenario runs the same playbooks with containers).
"""
from __future__ import annotations

import json
import os
import sys

import pytest

from dkimtest import dkimpy_sign, dkimpy_verify, headers_for, message_bytes
from dmstest import doveadm_verify, run_play
from pbtest import ACCOUNTS, MASTERS, SECRETS, Group, files, lines, run_playbook

HOSTS = ('mx1', 'mx2')


@pytest.fixture(scope='module')
def converged(tmp_path_factory):
    """A group converged once by the site playbook; tests work on copies of it."""
    group = Group(tmp_path_factory.mktemp('converged'))
    run = run_playbook(group, 'site')
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return group


@pytest.fixture
def group(converged, tmp_path):
    return converged.copy_to(tmp_path / 'group')


def state(group):
    return dict((h, files(group.root / h)) for h in group.hosts)


# -- site -------------------------------------------------------------------------------------------------------


def test_site_writes_the_same_state_on_every_host_and_a_rerun_changes_nothing(group):
    one, two = group.config('mx1'), group.config('mx2')
    for name in ('postfix-virtual.cf', 'dovecot-quotas.cf', 'postfix-relaymap.cf', 'postfix-sasl-password.cf',
                 'postfix-send-access.cf', 'opendkim/KeyTable', 'opendkim/SigningTable',
                 'opendkim/keys/example.com/mail.private', 'opendkim/keys/example.org/mail.private'):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    for host in HOSTS:
        stored = dict(line.split('|', 1) for line in lines(group.config(host) / 'postfix-accounts.cf'))
        assert sorted(stored) == sorted(a['address'] for a in ACCOUNTS)
        for account in ACCOUNTS:
            assert doveadm_verify(stored[account['address']], account['password'])
        masters = dict(line.split('|', 1) for line in lines(group.config(host) / 'dovecot-masters.cf'))
        assert sorted(masters) == sorted(m['name'] for m in MASTERS)
        for master in MASTERS:
            assert doveadm_verify(masters[master['name']], master['password'])
        assert (group.root / host / 'mailserver.env').exists()
    before = state(group)
    run = run_playbook(group, 'site')
    assert run.rc == 0, run.stdout[-3000:]
    assert [run.changed(h) for h in HOSTS] == [0, 0], run.stats
    assert state(group) == before
    for host in HOSTS:
        # Config-only: neither the firewall role nor the container ran.
        assert run.task('Open exactly the mail ports', host).get('skipped')
        assert run.task('Run the container', host).get('skipped')


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists('/usr/bin/apt-get'),
                    reason='installs Debian packages with apt (root on Debian/Ubuntu)')
def test_site_installs_the_python_libraries_and_runs_on_debians_packages(tmp_path):
    """dms_install_python_deps: apt installs Debian's libraries and every module then runs on /usr/bin/python3 with
    them; with another interpreter (a venv) the step refuses, naming the pip packages, before any state."""
    group = Group(tmp_path / 'debian', hosts=('mx1',), ansible_python_interpreter='/usr/bin/python3',
                  dms_install_python_deps=True)
    run = run_playbook(group, 'site')
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not run.task('Install python3-passlib', 'mx1').get('skipped')
    stored = dict(line.split('|', 1) for line in lines(group.config('mx1') / 'postfix-accounts.cf'))
    for account in ACCOUNTS:
        assert doveadm_verify(stored[account['address']], account['password'])
    again = run_playbook(group, 'site')
    assert again.rc == 0 and again.changed('mx1') == 0, again.stats

    venv = Group(tmp_path / 'venv', hosts=('mx1',), dms_install_python_deps=True)
    run = run_playbook(venv, 'site')
    assert run.rc != 0
    message = run.task('Refuse hosts where the packages', 'mx1')['msg']
    assert 'pip install libpass bcrypt argon2-cffi cryptography' in message and sys.executable in message
    assert not venv.config('mx1').exists()   # refused before the layout was made


def test_host_vars_override_the_group_on_one_host_only(group):
    group.host_vars['mx2']['dms_accounts'] = [{'address': 'dave@example.com', 'password': 'Dave-Pb-Pw-4'}]
    group.host_vars['mx2']['dms_postfix_main'] = {'message_size_limit': 20480000}
    group.write()
    before = state(group)
    run = run_playbook(group, 'site')
    assert run.rc == 0, run.stdout[-3000:]
    assert run.changed('mx1') == 0 and run.changed('mx2') > 0
    assert state(group)['mx1'] == before['mx1']
    assert 'dave@example.com|' in (group.config('mx2') / 'postfix-accounts.cf').read_text()
    assert 'message_size_limit = 20480000' in lines(group.config('mx2') / 'postfix-main.cf')
    assert not (group.config('mx1') / 'postfix-main.cf').exists()


# -- shared and per-host DKIM keys -------------------------------------------------------------------------------


def test_shared_dkim_keeps_the_key_one_host_already_has(tmp_path):
    group = Group(tmp_path)
    # mx2 alone has a key for example.com (for example the old single server); mx1 comes first in the play.
    task = {'dms.mailserver.dms_dkim': {'config_dir': str(group.config('mx2')), 'domain': 'example.com'}}
    made = run_play(tmp_path, [task])
    assert made.rc == 0, made.stdout
    key = (group.config('mx2') / 'opendkim/keys/example.com/mail.private').read_bytes()
    run = run_playbook(group, 'site')
    assert run.rc == 0, run.stdout[-3000:]
    for host in HOSTS:
        assert (group.config(host) / 'opendkim/keys/example.com/mail.private').read_bytes() == key
    assert (group.config('mx1') / 'opendkim/keys/example.org/mail.private').read_bytes() == \
        (group.config('mx2') / 'opendkim/keys/example.org/mail.private').read_bytes()
    chosen = run.task('Choose the source host', 'mx1')['results'][-1]['ansible_facts']['dms_dkim_sources']
    assert chosen == {'example.com': 'mx2', 'example.org': 'mx1'}


def test_shared_dkim_source_can_be_named(group):
    # A third inventory host that is not in the play (--limit) is the source: its key goes to the two others.
    group.hosts.append('mx0')
    group.host_vars['mx0'] = {'dms_base_dir': str(group.root / 'mx0'), 'dms_hostname': 'mx0.example.com'}
    group.vars['dms_dkim_shared_source'] = 'mx0'
    group.write()
    made = run_play(group.root, [{'dms.mailserver.dms_dkim': {'config_dir': str(group.config('mx0')),
                                                              'domains': ['example.com', 'example.org']}}])
    assert made.rc == 0, made.stdout
    run = run_playbook(group, 'site', limit='mx1:mx2')
    assert run.rc == 0, run.stdout[-3000:]
    for domain in ('example.com', 'example.org'):
        key = (group.config('mx0') / 'opendkim/keys' / domain / 'mail.private').read_bytes()
        for host in HOSTS:
            assert (group.config(host) / 'opendkim/keys' / domain / 'mail.private').read_bytes() == key
    assert sorted(run.stats) == ['mx1', 'mx2']


def test_per_host_dkim_keys_with_a_selector_per_host(tmp_path):
    group = Group(tmp_path, dms_dkim_shared=False,
                  dms_dkim=[{'domain': 'example.com', 'selector': '{{ inventory_hostname }}'}])
    run = run_playbook(group, 'site')
    assert run.rc == 0, run.stdout[-3000:]
    one = (group.config('mx1') / 'opendkim/keys/example.com/mx1.private').read_bytes()
    two = (group.config('mx2') / 'opendkim/keys/example.com/mx2.private').read_bytes()
    assert one != two
    dns = run_playbook(group, 'dns', {'dms_dns_output_dir': str(tmp_path / 'dns')})
    assert dns.rc == 0, dns.stdout[-3000:]
    records = dns.task('Compute the records', 'mx1')['ansible_facts']['dms_dns']['records']
    assert sorted(r['name'] for r in records if r['purpose'] == 'dkim') == \
        ['mx1._domainkey.example.com', 'mx2._domainkey.example.com']


# -- inconsistent inventories fail before anything changes -------------------------------------------------------

PROBLEMS = [
    ('alias_is_account', {'dms_aliases': [{'alias': 'alice@example.com', 'recipients': ['bob@example.com']}]},
     'dms_aliases[0].alias: alice@example.com is also an account (dms_accounts[0])'),
    ('dkim_domain_unused', {'dms_dkim': [{'domain': 'example.com'}, {'domain': 'unused.example'}]},
     'dms_dkim[1].domain: no account or alias uses the domain unused.example'),
    ('relay_domain_unused', {'dms_relays': [{'domain': 'elsewhere.example', 'host': 'smtp.relay.test'}]},
     'dms_relays[0].domain: no account or alias uses the domain elsewhere.example'),
    ('duplicate_account', {'dms_accounts': ACCOUNTS + [{'address': 'Alice@Example.com', 'password': 'x'}]},
     'dms_accounts[3].address: alice@example.com is listed again (first in dms_accounts[0].address)'),
    ('malformed_address', {'dms_accounts': ACCOUNTS + [{'address': 'no-at-sign', 'password': 'x'}]},
     'dms_accounts[3].address'),
    ('unshared_keys_one_name', {'dms_dkim_shared': False},
     'the hosts mx1, mx2 all sign example.com with the selector mail, but dms_dkim_shared is not true'),
]


@pytest.mark.parametrize('playbook', ['site', 'accounts', 'dns'])
@pytest.mark.parametrize('name, problem, message', PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_an_inconsistent_inventory_fails_early_on_every_host(group, playbook, name, problem, message):
    # The problem is in mx2's host_vars (or the group's, for the DKIM selector); mx1 is consistent.
    if name == 'unshared_keys_one_name':
        group.vars.update(problem)
    else:
        group.host_vars['mx2'].update(problem)
    # Something that would change on both hosts if the run went ahead.
    group.vars['dms_accounts'] = group.vars['dms_accounts'] + [{'address': 'new@example.com', 'password': 'N-1'}]
    if 'dms_accounts' in problem:
        group.host_vars['mx2']['dms_accounts'] = problem['dms_accounts'] + [{'address': 'new@example.com',
                                                                            'password': 'N-1'}]
    group.write()
    before = state(group)
    run = run_playbook(group, playbook)
    assert run.rc != 0
    assert any(message in m for m in run.failure_messages()), run.failure_messages()
    if name != 'unshared_keys_one_name':
        # The heading names the source: the inventory, not survey answers.
        assert 'The inventory of mx2 contradicts itself; nothing was changed on any host:' in run.failure_messages()
        assert not any('survey' in m for m in run.failure_messages())
    assert state(group) == before
    # Every host stopped in the check play: no later play ran.
    assert [p['play']['name'] for p in run.data['plays']] == ['Check the inventory of the mail hosts']


def test_validate_passes_a_consistent_inventory_and_changes_nothing(group):
    before = state(group)
    run = run_playbook(group, 'validate')
    assert run.rc == 0, run.stdout[-3000:]
    assert [run.changed(h) for h in HOSTS] == [0, 0]
    assert state(group) == before


# -- accounts: survey mode ---------------------------------------------------------------------------------------


def added_lines(before, after):
    """The lines of after that are not in before, with every line of before kept in order."""
    old, new = before.decode().splitlines(), after.decode().splitlines()
    assert [line for line in new if line in old] == old, 'lines of the file changed or moved'
    return [line for line in new if line not in old]


def test_survey_adds_one_account_and_touches_nothing_else(group):
    before = state(group)
    survey = {'dms_account_address': 'dave@example.com', 'dms_account_password': 'Dave-Survey-Pw-4',
              'dms_account_quota': '500M', 'dms_account_restrict': '', 'dms_account_state': '',
              'dms_alias_address': '', 'dms_alias_recipients': ''}
    run = run_playbook(group, 'accounts', survey)
    assert run.rc == 0, run.stdout[-3000:]
    for host in HOSTS:
        after = files(group.root / host)
        changed = sorted(n for n in set(after) | set(before[host]) if after.get(n) != before[host].get(n))
        assert changed == ['docker-data/dms/config/dovecot-quotas.cf', 'docker-data/dms/config/postfix-accounts.cf']
        new = added_lines(before[host]['docker-data/dms/config/postfix-accounts.cf'],
                          after['docker-data/dms/config/postfix-accounts.cf'])
        assert len(new) == 1 and new[0].startswith('dave@example.com|{SHA512-CRYPT}')
        assert doveadm_verify(new[0].split('|', 1)[1], 'Dave-Survey-Pw-4')
        assert added_lines(before[host]['docker-data/dms/config/dovecot-quotas.cf'],
                           after['docker-data/dms/config/dovecot-quotas.cf']) == ['dave@example.com:500M']
    again = run_playbook(group, 'accounts', survey)
    assert [again.changed(h) for h in HOSTS] == [0, 0]


def test_survey_leaves_the_dovecot_masters_alone_and_inventory_mode_applies_them(group):
    """A master added by hand is not the survey's business; the inventory's exclusive list removes it."""
    path = group.config('mx1') / 'dovecot-masters.cf'
    hand = 'byhand|%s' % lines(path)[0].split('|', 1)[1]
    path.write_text(path.read_text() + hand + '\n')
    survey = {'dms_account_address': 'erin@example.com', 'dms_account_password': 'Erin-Survey-Pw-6'}
    run = run_playbook(group, 'accounts', survey)
    assert run.rc == 0, run.stdout[-3000:]
    assert hand in lines(path)
    run = run_playbook(group, 'accounts')
    assert run.rc == 0, run.stdout[-3000:]
    assert hand not in lines(path) and [line.split('|')[0] for line in lines(path)] == ['admin']


def test_survey_adds_one_alias_from_a_text_answer(group):
    before = state(group)
    run = run_playbook(group, 'accounts', {'dms_alias_address': 'sales@example.com',
                                           'dms_alias_recipients': 'alice@example.com,\nbob@example.com'})
    assert run.rc == 0, run.stdout[-3000:]
    for host in HOSTS:
        after = files(group.root / host)
        name = 'docker-data/dms/config/postfix-virtual.cf'
        assert added_lines(before[host][name], after[name]) == ['sales@example.com alice@example.com,bob@example.com']
        assert dict((k, v) for k, v in after.items() if k != name) == \
            dict((k, v) for k, v in before[host].items() if k != name)


def test_survey_resets_the_password_of_an_account_it_added_and_only_that_line(group):
    add = {'dms_account_address': 'erin@example.com', 'dms_account_password': 'Erin-Pw-1'}
    assert run_playbook(group, 'accounts', add).rc == 0
    before = dict((h, lines(group.config(h) / 'postfix-accounts.cf')) for h in HOSTS)
    run = run_playbook(group, 'accounts', dict(add, dms_account_password='Erin-Pw-2'))
    assert run.rc == 0, run.stdout[-3000:]
    for host in HOSTS:
        after = lines(group.config(host) / 'postfix-accounts.cf')
        changed = [(b, a) for b, a in zip(before[host], after) if b != a]
        assert len(after) == len(before[host]) and len(changed) == 1
        assert changed[0][1].startswith('erin@example.com|') and doveadm_verify(changed[0][1].split('|', 1)[1],
                                                                                'Erin-Pw-2')


@pytest.mark.parametrize('survey, message', [
    ({'dms_account_address': 'alice@example.com', 'dms_account_password': 'Other-1'},
     'dms_account_address: alice@example.com is managed by the inventory (dms_accounts[0])'),
    ({'dms_alias_address': 'info@example.com', 'dms_alias_recipients': 'carol@example.org'},
     'dms_alias_address: info@example.com is managed by the inventory (dms_aliases[0])'),
    ({'dms_alias_address': 'bob@example.com', 'dms_alias_recipients': 'alice@example.com'},
     'dms_alias_address: bob@example.com is also an account (dms_accounts[1])'),
    ({'dms_account_address': 'frank@example.com', 'dms_account_password': 'F-1', 'dms_accounts_exclusive': True},
     'dms_accounts_exclusive is true for this host, so the next inventory run would remove frank@example.com'),
    ({'dms_alias_address': 'x@example.com'}, 'dms_alias_recipients: an alias needs at least one recipient'),
    ({'dms_account_password': 'orphan'}, 'dms_account_password is set but dms_account_address is not'),
])
def test_survey_answers_that_conflict_with_the_inventory_are_refused(group, survey, message):
    before = state(group)
    run = run_playbook(group, 'accounts', survey)
    assert run.rc != 0
    assert any(message in m for m in run.failure_messages()), run.failure_messages()
    # The heading blames the survey answers, not the inventory (which is consistent here).
    assert 'The survey answers (extra variables dms_account_* and dms_alias_*) for mx1 are refused; nothing was ' \
        'changed on any host:' in run.failure_messages()
    assert not any('contradicts itself' in m for m in run.failure_messages()), run.failure_messages()
    assert state(group) == before
    assert 'orphan' not in run.stdout and 'Other-1' not in run.stdout


# -- accounts: inventory mode, drift and secrets -----------------------------------------------------------------


def test_survey_out_of_office_switch_on_then_off_for_one_user(group):
    """dms_vacation=on writes the user's vacation script (and the accounts comment that makes DMS copy it); off
    replaces it with the neutral script; nothing else changes, and a rerun changes nothing."""
    before = state(group)
    survey = {'dms_vacation_address': 'bob@example.com', 'dms_vacation': 'on', 'dms_vacation_subject': 'Away',
              'dms_vacation_body': 'Back on Monday.', 'dms_vacation_days': '3'}
    run = run_playbook(group, 'accounts', survey)
    assert run.rc == 0, run.stdout[-3000:]
    script = 'docker-data/dms/config/bob@example.com.dovecot.sieve'
    for host in HOSTS:
        after = files(group.root / host)
        changed = sorted(n for n in set(after) | set(before[host]) if after.get(n) != before[host].get(n))
        assert changed == ['docker-data/dms/config/bob@example.com.dovecot.sieve',
                           'docker-data/dms/config/postfix-accounts.cf']
        assert b'vacation :days 3 :subject "Away" "Back on Monday.";' in after[script]
        new = added_lines(before[host]['docker-data/dms/config/postfix-accounts.cf'],
                          after['docker-data/dms/config/postfix-accounts.cf'])
        assert len(new) == 1 and new[0].startswith('# dms_sieve ')
    again = run_playbook(group, 'accounts', survey)
    assert [again.changed(h) for h in HOSTS] == [0, 0]
    off = run_playbook(group, 'accounts', {'dms_vacation_address': 'bob@example.com', 'dms_vacation': 'off'})
    assert off.rc == 0, off.stdout[-3000:]
    for host in HOSTS:
        text = files(group.root / host)[script].decode()
        assert 'vacation' not in text and text.endswith('keep;\n')


def test_check_diff_reports_drift_made_by_hand_and_changes_nothing(group):
    cfg = group.config('mx2')
    quotas = cfg / 'dovecot-quotas.cf'
    quotas.write_text(quotas.read_text().replace('alice@example.com:1G', 'alice@example.com:9G'))
    virtual = cfg / 'postfix-virtual.cf'
    virtual.write_text(''.join(line + '\n' for line in lines(virtual) if not line.startswith('info@')))
    before = state(group)
    run = run_playbook(group, 'accounts', check=True, diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert run.changed('mx1') == 0 and run.changed('mx2') == 2
    quota_diff, = [d for d in run.task('Accounts, passwords, quotas', 'mx2')['diff']
                   if d['before_header'] == 'dovecot-quotas.cf']
    assert 'alice@example.com:9G' in quota_diff['before'] and 'alice@example.com:1G' in quota_diff['after']
    alias_diff, = [d for d in run.task('Aliases', 'mx2')['diff'] if d['before_header'] == 'postfix-virtual.cf']
    assert 'info@example.com alice@example.com,bob@example.com' not in alias_diff['before']
    assert 'info@example.com alice@example.com,bob@example.com' in alias_diff['after']
    assert not run.task('Aliases', 'mx1')['changed']
    assert state(group) == before
    for secret in SECRETS:
        assert secret not in run.stdout


def test_check_diff_as_the_guide_says_site_hides_state_diffs_and_accounts_shows_them_masked(group):
    """docs/guide-zero-to-mail.md, step 4: with the role (dms_no_log true by default) --check --diff shows which
    state tasks would change but no file diff; dms.mailserver.accounts -e dms_hosts=<host> --check --diff shows the
    diff with hashes masked, on that host only."""
    group.vars['dms_accounts'][0]['password'] = 'Alice-Guide-Pb-Pw-5'
    group.write()
    before = state(group)
    site = run_playbook(group, 'site', check=True, diff=True)
    assert site.rc == 0, site.stdout[-3000:]
    hidden = site.task('Accounts, passwords, quotas', 'mx1')
    assert hidden['changed'] and 'censored' in hidden and 'diff' not in hidden, hidden
    accounts = run_playbook(group, 'accounts', {'dms_hosts': 'mx1'}, check=True, diff=True)
    assert accounts.rc == 0, accounts.stdout[-3000:]
    assert sorted(accounts.stats) == ['mx1']
    diff, = [d for d in accounts.task('Accounts, passwords, quotas', 'mx1')['diff']
             if d['before_header'] == 'postfix-accounts.cf']
    assert 'alice@example.com|{SHA512-CRYPT}<hash #' in diff['after'] and 'masked>' in diff['after'], diff
    stored = [line.split('|', 1)[1] for line in lines(group.config('mx1') / 'postfix-accounts.cf')]
    for secret in SECRETS + ['Alice-Guide-Pb-Pw-5'] + stored:
        assert secret not in site.stdout + accounts.stdout
    assert state(group) == before


def test_accounts_shows_no_secret_at_vvvv_with_diff(group):
    # A password change and a relay password change, shown with --diff at -vvvv (the default callback).
    group.vars['dms_accounts'][0]['password'] = 'Alice-Changed-Pb-Pw-7'
    group.vars['dms_relays'][0]['password'] = 'Relay-Changed-Pb-Pw-8'
    group.write()
    hashes = [line.split('|', 1)[1] for h in HOSTS for line in lines(group.config(h) / 'postfix-accounts.cf')]
    run = run_playbook(group, 'accounts', diff=True, verbosity=4, json_output=False)
    assert run.rc == 0, run.stdout[-3000:]
    assert 'changed=2' in run.stdout   # accounts and relays, on each host
    output = run.stdout + run.stderr
    for secret in SECRETS + ['Alice-Changed-Pb-Pw-7', 'Relay-Changed-Pb-Pw-8'] + hashes:
        assert secret not in output
    new_hashes = [line.split('|', 1)[1] for h in HOSTS for line in lines(group.config(h) / 'postfix-accounts.cf')]
    for hashed in new_hashes:
        assert hashed not in output


def test_accounts_in_inventory_mode_applies_no_dkim_and_no_container(group):
    group.vars['dms_dkim'] = [{'domain': 'example.com', 'selector': 'other'}]
    group.write()
    run = run_playbook(group, 'accounts')
    assert run.rc == 0, run.stdout[-3000:]
    for host in HOSTS:
        assert not (group.config(host) / 'opendkim/keys/example.com/other.private').exists()


# -- dns ---------------------------------------------------------------------------------------------------------


def test_dns_records_for_two_domains_are_correct_and_dkim_verifies_with_the_host_key(group, tmp_path):
    before = state(group)
    run = run_playbook(group, 'dns', {'dms_dns_output_dir': str(tmp_path / 'dns')})
    assert run.rc == 0, run.stdout[-3000:]
    assert state(group) == before   # dns changes nothing on the hosts
    data = json.loads((tmp_path / 'dns' / 'dns-records.json').read_text())
    records = data['records']
    by = {}
    for record in records:
        by.setdefault((record['domain'], record['purpose']), []).append(record)
    for domain in ('example.com', 'example.org'):
        assert sorted((r['priority'], r['value'], r['rdata']) for r in by[(domain, 'mx')]) == [
            (10, 'mx1.example.com', '10 mx1.example.com.'), (20, 'mx2.example.com', '20 mx2.example.com.')]
        spf, = by[(domain, 'spf')]
        assert (spf['name'], spf['type'], spf['value']) == (domain, 'TXT', 'v=spf1 mx ~all')
        dmarc, = by[(domain, 'dmarc')]
        assert (dmarc['name'], dmarc['type'], dmarc['value']) == \
            ('_dmarc.' + domain, 'TXT', 'v=DMARC1; p=none; rua=mailto:postmaster@' + domain)
        dkim_record, = by[(domain, 'dkim')]
        assert dkim_record['name'] == 'mail._domainkey.' + domain and dkim_record['type'] == 'TXT'
        assert sorted(dkim_record['hosts']) == ['mx1', 'mx2']
        assert ''.join(dkim_record['chunks']) == dkim_record['value']
        # Sign with each host's key file; the published record verifies the signature, another one does not.
        other = [r for r in records if r['purpose'] == 'dkim' and r['domain'] != domain][0]
        for host in HOSTS:
            private = (group.config(host) / 'opendkim/keys' / domain / 'mail.private').read_text()
            message = message_bytes(headers_for('user@' + domain))
            signed = dkimpy_sign(message, 'mail', domain, private) + message
            assert dkimpy_verify(signed, {dkim_record['name']: dkim_record['value']}) is True
            assert dkimpy_verify(signed, {dkim_record['name']: other['value']}) is False
    table = (tmp_path / 'dns' / 'dns-records.txt').read_text()
    assert 'example.com.' in table and '_dmarc.example.org.' in table and 'IN MX    20 mx2.example.com.' in table
    shown = '\n'.join(run.task('Show the DNS records', 'mx1')['msg'])
    assert shown.strip() == table.strip()
    # The postmaster of example.com has no mailbox or alias: the notes say so.
    assert any('postmaster@example.com, which is no account or alias' in n for n in data['notes'])


def test_dns_reports_changes_only_for_the_files_it_writes_on_the_controller(group, tmp_path):
    """docs/playbooks.md: changed=2 on the first run with dms_dns_output_dir (its folder and files), changed=0 on the
    next with the same records, and changed=0 without dms_dns_output_dir."""
    before = state(group)
    plain = run_playbook(group, 'dns')
    assert plain.rc == 0, plain.stdout[-3000:]
    assert [plain.changed(h) for h in HOSTS] == [0, 0], plain.stats
    out = {'dms_dns_output_dir': str(tmp_path / 'dns')}
    first = run_playbook(group, 'dns', out)
    assert first.rc == 0, first.stdout[-3000:]
    assert sum(first.changed(h) for h in HOSTS) == 2, first.stats
    assert first.task('Create the output folder', 'mx1')['changed']
    assert first.task('Write the records', 'mx1')['changed']
    again = run_playbook(group, 'dns', out)
    assert [again.changed(h) for h in HOSTS] == [0, 0], again.stats
    assert state(group) == before


def test_dns_before_the_keys_exist_says_so_and_generates_nothing(tmp_path):
    group = Group(tmp_path)
    run = run_playbook(group, 'dns')
    assert run.rc == 0, run.stdout[-3000:]
    dns = run.task('Compute the records', 'mx1')['ansible_facts']['dms_dns']
    assert not [r for r in dns['records'] if r['purpose'] == 'dkim']
    assert any('has no DKIM key for example.com yet' in n for n in dns['notes'])
    for host in HOSTS:
        assert not (group.root / host).exists()
