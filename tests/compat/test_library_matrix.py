# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_account on every hashing-library set a managed host plausibly has (see compat.py and docs/hashing.md).

One playbook, one host per row (a library set on one Python, as ``ansible_python_interpreter``), each with a
config dir of its own seeded with hashes written by Dovecot's ``doveadm pw``.  On every row:

1. accounts are created with all three schemes, and the right passwords are checked against the doveadm hashes
   (no scheme given, and BLF-CRYPT given explicitly): only the new accounts change;
2. the same task again: ``changed=false``;
3. with a ``bcrypt`` that fails the way bcrypt 5 did under passlib 1.7.4 shadowing the real one: the task fails,
   naming the library, and nothing is written (the doveadm lines are byte-identical at the end);
4. on the rows that have ``cryptography`` (the current set on every Python, and Debian's packages), the other three
   state modules too, ``dms_alias``, ``dms_relay`` and ``dms_dkim``, each run twice: changed, then unchanged.

The hashes written are then checked with ``doveadm pw -t``.  The row with passlib alone must fail with install
guidance and leave the config dir as it was.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import yaml
from compat import NOTES, ROWS, Container, debian13_image, debian_python, find_python, venv_for
from dmstest import ansible_env, doveadm_hash, doveadm_verify

DOVEADM_PW = 'Doveadm-written-1'
NEW_PW = {'SHA512-CRYPT': 'New-sha-pw-1', 'BLF-CRYPT': 'New-blf-pw-ü', 'ARGON2ID': 'New-argon-pw-1'}
NEW = {'SHA512-CRYPT': 'n-sha@example.com', 'BLF-CRYPT': 'n-blf@example.com', 'ARGON2ID': 'n-arg@example.com'}
OLD = {'SHA512-CRYPT': 'd-sha@example.com', 'BLF-CRYPT': 'd-blf@example.com', 'ARGON2ID': 'd-arg@example.com'}

BROKEN_BCRYPT = '''\
"""A stand-in for bcrypt that refuses every password, as bcrypt 5.0 did under passlib 1.7.4."""
__version__ = "5.0.0"


def gensalt(rounds=12, prefix=b"2b"):
    return b"$2b$%02d$" % rounds + b"." * 22


def hashpw(password, salt):
    raise ValueError("password cannot be longer than 72 bytes, truncate manually if necessary")


checkpw = hashpw
'''


# The other state modules, each run twice on the rows with all libraries (all_modules).
OTHER_MODULES = [
    ('dms_alias', {'alias': 'info@example.com', 'recipients': [NEW['SHA512-CRYPT']]}),
    ('dms_relay', {'domain': 'example.com', 'host': 'smtp.example.net', 'port': 587, 'username': 'relay-user',
                   'password': 'Relay-compat-pw-1'}),
    ('dms_dkim', {'domain': 'example.com', 'key_type': 'ed25519'}),
]


def _all_modules(name):
    return name in ('debian_packages', 'debian13_packages') or name.endswith('libpass1.9+bcrypt5.0')


def _rows():
    """(host name, description, interpreter) for every row this machine can run; the others are noted."""
    wanted, skipped = [], []
    for set_name, version in ROWS:
        python = find_python(version)
        if python is None:
            skipped.append('%s on Python %s: no Python %s here' % (set_name, version, version))
        else:
            wanted.append((set_name, version, python))
    rows = []
    with ThreadPoolExecutor(2) as pool:
        built = list(pool.map(lambda row: venv_for(row[0], row[2]), wanted))
    for (set_name, version, dummy), interpreter in zip(wanted, built):
        rows.append(('py%s_%s' % (version, set_name), '%s on Python %s (pip)' % (set_name, version), interpreter))
    system = debian_python()
    if system:
        rows.append(('debian_packages', "Debian's python3-passlib, python3-bcrypt, python3-argon2, python3-cryptography"
                     " on %s" % system, system))
    else:
        skipped.append("Debian's packages: python3-passlib, python3-bcrypt, python3-argon2 or python3-cryptography "
                       "not installed")
    return rows, skipped


def _host(name):
    return re.sub(r'[^A-Za-z0-9_]', '_', name)


def test_library_matrix(tmp_path):
    rows, skipped = _rows()
    assert rows, 'no row could run: ' + '; '.join(skipped)
    image, why_not = debian13_image()
    if image is None:
        skipped.append("Debian 13's packages in a container: %s" % why_not)
        _run_matrix(tmp_path, rows, skipped, None)
        return
    with Container(image, tmp_path) as container:
        rows.append(('debian13_packages', "Debian 13's packages in a container (%s)" % container.packages(),
                     '/usr/bin/python3'))
        _run_matrix(tmp_path, rows, skipped, container)


def _run_matrix(tmp_path, rows, skipped, container):
    seeds = dict((scheme, doveadm_hash(DOVEADM_PW, scheme)) for scheme in OLD)
    seed_text = ''.join('%s|%s\n' % (OLD[s], seeds[s]) for s in sorted(OLD))
    stub = tmp_path / 'broken-bcrypt'
    stub.mkdir()
    (stub / 'bcrypt.py').write_text(BROKEN_BCRYPT)

    inventory = {'all': {'hosts': {}}}
    for name, dummy, interpreter in rows:
        cfg = tmp_path / 'cfg' / _host(name)
        cfg.mkdir(parents=True)
        (cfg / 'postfix-accounts.cf').write_text(seed_text)
        inventory['all']['hosts'][_host(name)] = {
            'ansible_connection': 'local', 'ansible_python_interpreter': interpreter, 'cfg': str(cfg),
            'all_modules': _all_modules(name)}
        if name == 'debian13_packages':
            inventory['all']['hosts'][_host(name)].update(ansible_connection='community.docker.docker',
                                                          ansible_host=container.name)
    accounts = [dict(address=NEW[s], password=NEW_PW[s], scheme=s) for s in sorted(NEW)]
    accounts += [dict(address=OLD['SHA512-CRYPT'], password=DOVEADM_PW),
                 dict(address=OLD['BLF-CRYPT'], password=DOVEADM_PW, scheme='BLF-CRYPT'),
                 dict(address=OLD['ARGON2ID'], password=DOVEADM_PW)]
    task = {'dms.mailserver.dms_account': {'config_dir': '{{ cfg }}', 'accounts': accounts}, 'ignore_errors': True}
    play = [{'hosts': 'all', 'gather_facts': False, 'tasks': [
        dict(task, name='create and verify'),
        dict(task, name='again'),
        dict(name='broken bcrypt', ignore_errors=True, environment={'PYTHONPATH': str(stub)},
             **{'dms.mailserver.dms_account': {'config_dir': '{{ cfg }}', 'address': OLD['BLF-CRYPT'],
                                               'password': DOVEADM_PW}}),
    ] + [dict(name='%s %s' % (module, run), ignore_errors=True, when='all_modules',
              **{'dms.mailserver.' + module: dict(args, config_dir='{{ cfg }}')})
         for run in ('first', 'again') for module, args in OTHER_MODULES]}]
    (tmp_path / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(play, sort_keys=False))
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
         '-f', '4', str(tmp_path / 'play.yml')],
        capture_output=True, text=True, env=ansible_env({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json'}),
        timeout=900, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError('ansible-playbook printed no JSON:\n%s\n%s' % (proc.stdout[-3000:], proc.stderr[-3000:]))
    tasks = data['plays'][0]['tasks']

    problems = []
    for name, description, dummy in rows:
        host = _host(name)
        results = [t['hosts'].get(host, {}) for t in tasks]
        text = (tmp_path / 'cfg' / host / 'postfix-accounts.cf').read_text()
        try:
            if name.endswith('passlib-only'):
                _check_missing_libraries(results, text, seed_text)
            else:
                _check_row(results[:3], text, seeds)
            _check_other_modules(results[3:], _all_modules(name))
        except AssertionError as exc:
            problems.append('%s: %s' % (description, exc))
        else:
            NOTES.append('ok: %s' % description)
    NOTES.extend('skipped: %s' % line for line in skipped)
    assert not problems, '\n'.join(problems)


def _check_row(results, text, seeds):
    first, again, broken = results
    assert not first.get('failed'), 'create failed: %s' % first.get('msg')
    assert first['created'] == [NEW[s] for s in sorted(NEW)], first['created']
    assert first['updated'] == [], 'doveadm hashes were rewritten: %r' % first['updated']
    assert not again.get('failed') and again['changed'] is False, 'second run: %r' % again
    assert broken.get('failed') is True, 'a broken bcrypt did not fail the task: %r' % broken
    assert 'bcrypt failed its self-test' in broken['msg'] and 'nothing was written' in broken['msg'], broken['msg']
    assert 'pip install -U libpass bcrypt argon2-cffi' in broken['msg'], broken['msg']
    lines = dict(line.split('|', 1) for line in text.splitlines())
    for scheme, address in OLD.items():
        assert lines[address] == seeds[scheme], '%s: the doveadm hash was replaced' % address
    for scheme, address in NEW.items():
        assert lines[address].startswith('{%s}' % scheme), lines[address]
        assert doveadm_verify(lines[address], NEW_PW[scheme]), '%s: doveadm pw -t refuses the hash' % address


def _check_other_modules(results, wanted):
    count = len(OTHER_MODULES)
    for (module, dummy), first, again in zip(OTHER_MODULES, results[:count], results[count:]):
        if not wanted:
            assert first.get('skipped') and again.get('skipped'), module
            continue
        assert not first.get('failed') and first.get('changed') is True, '%s: %r' % (module, first.get('msg', first))
        assert not again.get('failed') and again.get('changed') is False, '%s again: %r' % (module, again)


def _check_missing_libraries(results, text, seed_text):
    for result in results[:2]:
        assert result.get('failed') is True, result
        msg = result['msg']
        assert msg.startswith('Failed to import the required Python library (argon2-cffi)'), msg
        assert 'pip install -U argon2-cffi' in msg and 'apt-get install python3-argon2' in msg, msg
    assert results[2].get('failed') is True
    assert text == seed_text, 'the config dir changed'
