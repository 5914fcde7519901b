# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks of dms_account (and dms_alias) at 100, 1,000 and 10,000 entries.

Run through bench/run, which prepares the venv and the staged collection.
Prints a table of measurements and the goals as ratios measured in this same
run.  "Module time" is a playbook's wall time minus the wall time of an empty
playbook measured in the same run.  The entries reach the task as a variable
from a JSON vars file (``-e @file``), as inventory or AWX extra vars would;
the empty playbook it is compared with loads the same file, so loading the
user's data is not counted as the module's time (the table shows it).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
STAGE = Path(os.environ['DMS_BENCH_STAGE'])
sys.path.insert(0, str(STAGE.parents[2]))

from ansible_collections.dms.mailserver.plugins.module_utils import _hashing  # noqa: E402

PYTHON = sys.executable
PLAYBOOK = str(Path(PYTHON).parent / 'ansible-playbook')


def rss_wrapper(tmp):
    """An interpreter for the module that records its peak RSS (GNU time, Debian package 'time')."""
    wrapper = Path(tmp) / 'python-rss'
    log = Path(tmp) / 'rss.log'
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/time -a -o "%s" -f %%M "%s" "$@"\n' % (log, PYTHON))
    wrapper.chmod(0o755)
    return wrapper, log


def play(tmp, tasks, name):
    path = Path(tmp) / ('%s.yml' % name)
    path.write_text(yaml.safe_dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}],
                                   sort_keys=False))
    return path


def vars_file(tmp, name, **variables):
    path = Path(tmp) / ('%s.json' % name)
    path.write_text(json.dumps(variables))
    return path


def run_playbook(tmp, path, interpreter=PYTHON, extra_vars=None):
    # The default output, as a user running ansible-playbook sees it (a JSON callback would add the cost of
    # printing every result in full, echoed module arguments included).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(STAGE.parents[2]), ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default',
               ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_NOCOLOR='1')
    extra = ['-e', '@%s' % extra_vars] if extra_vars else []
    start = time.monotonic()
    proc = subprocess.run([PLAYBOOK, '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % interpreter]
                          + extra + [str(path)], capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit('playbook %s failed:\n%s\n%s' % (path, proc.stdout[-3000:], proc.stderr[-3000:]))
    recap = re.search(r'^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)', proc.stdout, re.M)
    if recap is None and 'PLAY RECAP' not in proc.stdout:
        raise SystemExit('no play recap in the output of %s:\n%s' % (path, proc.stdout[-3000:]))
    return elapsed, {'changed': int(recap.group(2)) if recap else 0}  # a play without tasks lists no host


def measure_module(tmp, tasks, name, extra_vars=None):
    """(wall seconds, peak RSS MiB of the module processes, changed count)."""
    wrapper, log = rss_wrapper(tmp)
    if log.exists():
        log.unlink()
    elapsed, stats = run_playbook(tmp, play(tmp, tasks, name), interpreter=wrapper, extra_vars=extra_vars)
    peaks = [int(line) for line in log.read_text().split() if line.strip().isdigit()] if log.exists() else [0]
    return elapsed, max(peaks) / 1024.0, stats['changed']


def empty_playbook(tmp, extra_vars=None, repeat=3):
    """Median wall time of a playbook without tasks, given the same vars file as the playbook it is compared with."""
    path = play(tmp, [], 'empty')
    return statistics.median(run_playbook(tmp, path, extra_vars=extra_vars)[0] for dummy in range(repeat))


def floor(n, scheme):
    """Hash n passwords and verify n, in this one process, with the library and scheme the module uses."""
    passwords = ['pw-%d' % i for i in range(n)]
    start = time.monotonic()
    hashes = [_hashing.hash_password(p, scheme) for p in passwords]
    hashing = time.monotonic() - start
    start = time.monotonic()
    for p, h in zip(passwords, hashes):
        _hashing.verify_password(p, h)
    verifying = time.monotonic() - start
    return hashing, verifying


def cli_baseline(tmp, n):
    """What `setup email add` does per account minus the container exec: one doveadm process + an append."""
    target = Path(tmp) / 'cli-postfix-accounts.cf'
    start = time.monotonic()
    with open(target, 'a') as handle:
        for i in range(n):
            out = subprocess.run(['doveadm', 'pw', '-s', 'SHA512-CRYPT', '-p', 'pw-%d' % i], capture_output=True,
                                 text=True, check=True)
            handle.write('u%05d@bench.example|%s\n' % (i, out.stdout.strip()))
            handle.flush()
    return time.monotonic() - start


def accounts(n, scheme=None, change_every=None, salt=''):
    items = []
    for i in range(n):
        password = 'pw-%d' % i
        if change_every and i % change_every == 0:
            password += '-changed' + salt
        item = {'address': 'u%05d@bench.example' % i, 'password': password}
        if scheme:
            item['scheme'] = scheme
        items.append(item)
    return items


def account_task(cfg, **kw):
    args = dict(config_dir=str(cfg), accounts='{{ bench_accounts }}')
    args.update(kw)
    return [{'name': 'accounts', 'dms.mailserver.dms_account': args}]


def bench_accounts(tmp, n, scheme, results, with_reruns=True):
    cfg = Path(tmp) / ('cfg-%s-%d' % (scheme, n))
    row = {'n': n, 'scheme': scheme}
    items = vars_file(tmp, 'accounts-%s-%d' % (scheme, n),
                      bench_accounts=accounts(n, scheme=None if scheme == 'SHA512-CRYPT' else scheme))
    empty = row['empty'] = empty_playbook(tmp, items)
    wall, rss, changed = measure_module(tmp, account_task(cfg), 'create', items)
    assert changed == 1
    row['create'] = wall - empty
    row['rss_create'] = rss
    if with_reruns:
        wall, rss, changed = measure_module(tmp, account_task(cfg, update_password='always'), 'again', items)
        assert changed == 0
        row['rerun_always'] = wall - empty
        row['rss_rerun'] = rss
        # The quickest run, and the one with a 2-second goal: the median of three, like the empty playbook.
        walls = []
        for dummy in range(3):
            wall, rss, changed = measure_module(tmp, account_task(cfg, update_password='on_create'), 'oncreate',
                                                items)
            assert changed == 0
            walls.append(wall)
        row['rerun_on_create'] = statistics.median(walls) - empty
        changed_items = vars_file(tmp, 'changed-%s-%d' % (scheme, n), bench_accounts=accounts(
            n, scheme=None if scheme == 'SHA512-CRYPT' else scheme, change_every=100))
        wall, rss, changed = measure_module(tmp, account_task(cfg), 'onepercent', changed_items)
        assert changed == 1
        row['one_percent'] = wall - empty
    results.append(row)
    return row


def bench_loop(tmp, n):
    cfg = Path(tmp) / 'cfg-loop'
    items = vars_file(tmp, 'loop-%d' % n, bench_accounts=accounts(n))
    empty = empty_playbook(tmp, items)
    tasks = [{'name': 'account', 'loop': '{{ bench_accounts }}', 'no_log': True,
              'dms.mailserver.dms_account': {'config_dir': str(cfg), 'address': '{{ item.address }}',
                                             'password': '{{ item.password }}'}}]
    wall, dummy, dummy2 = measure_module(tmp, tasks, 'loop', items)
    return (wall - empty) / n


def bench_aliases(tmp, n):
    cfg = Path(tmp) / 'cfg-aliases'
    items = vars_file(tmp, 'aliases-%d' % n, bench_aliases=[
        {'alias': 'a%05d@bench.example' % i, 'recipients': ['u%05d@bench.example' % i, 'team@elsewhere.example']}
        for i in range(n)])
    empty = empty_playbook(tmp, items)
    task = [{'name': 'aliases', 'dms.mailserver.dms_alias': {'config_dir': str(cfg), 'aliases': '{{ bench_aliases }}'}}]
    create, rss, dummy = measure_module(tmp, task, 'aliases', items)
    again, rss2, changed = measure_module(tmp, task, 'aliases-again', items)
    assert changed == 0
    return create - empty, again - empty, max(rss, rss2)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--sizes', default='100,1000,10000', help='account counts (default 100,1000,10000)')
    parser.add_argument('--loop-n', type=int, default=100, help='tasks in the loop measurement (default 100)')
    parser.add_argument('--skip-cli', action='store_true', help='skip the doveadm-per-account baseline')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    cores = _hashing.cpu_count()
    results = []
    with tempfile.TemporaryDirectory(prefix='dms-bench-') as tmp:
        empty = empty_playbook(tmp)
        print('empty playbook without vars: %.2f s; CPUs used by the module: %d' % (empty, cores))
        floors = {}
        for n in sizes:
            floors[('SHA512-CRYPT', n)] = floor(n, 'SHA512-CRYPT')
        for scheme in ('BLF-CRYPT', 'ARGON2ID'):
            if 1000 in sizes:
                floors[(scheme, 1000)] = floor(1000, scheme)
        for n in sizes:
            bench_accounts(tmp, n, 'SHA512-CRYPT', results)
        for scheme in ('BLF-CRYPT', 'ARGON2ID'):
            if 1000 in sizes:
                bench_accounts(tmp, 1000, scheme, results, with_reruns=True)
        slope = bench_loop(tmp, args.loop_n)
        cli = {}
        if not args.skip_cli:
            for n in sizes:
                cli[n] = cli_baseline(tmp, n)
        alias_n = max(sizes)
        alias_create, alias_again, alias_rss = bench_aliases(tmp, alias_n)

    print()
    print('| N | scheme | empty playbook with the vars (subtracted) | floor hash (1 CPU) | floor verify (1 CPU) | '
          'bulk create | bulk re-run (always) | re-run (on_create, median of 3) | 1% changed | peak RSS MiB | CLI-style baseline |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for row in results:
        fh, fv = floors[(row['scheme'], row['n'])]
        print('| %d | %s | %.2f s | %.2f s | %.2f s | %.2f s | %s | %s | %s | %.0f | %s |' % (
            row['n'], row['scheme'], row['empty'], fh, fv, row['create'],
            '%.2f s' % row['rerun_always'] if 'rerun_always' in row else '-',
            '%.2f s' % row['rerun_on_create'] if 'rerun_on_create' in row else '-',
            '%.2f s' % row['one_percent'] if 'one_percent' in row else '-',
            max(row['rss_create'], row.get('rss_rerun', 0)),
            '%.2f s' % cli[row['n']] if row['scheme'] == 'SHA512-CRYPT' and row['n'] in cli else '-'))
    print()
    print('loop of single-account tasks: %.3f s per task (measured over %d tasks)' % (slope, args.loop_n))
    print('aliases: %d in one dms_alias call: create %.2f s, re-run %.2f s, peak RSS %.0f MiB'
          % (alias_n, alias_create, alias_again, alias_rss))
    print()
    print('| goal | measured | target | met |')
    print('|---|---|---|---|')
    goals = []
    for row in results:
        if row['scheme'] != 'SHA512-CRYPT' or row['n'] < 1000:
            continue
        fh, fv = floors[(row['scheme'], row['n'])]
        for label, value, base in (('bulk create', row['create'], fh), ('bulk re-run', row['rerun_always'], fv)):
            target = 1.5 * (base / cores) + 2
            goals.append(('%s at N=%d: module time <= 1.5 x (floor / %d CPUs) + 2 s' % (label, row['n'], cores),
                          '%.2f s' % value, '%.2f s' % target, value <= target))
    for row in results:
        if row['scheme'] == 'SHA512-CRYPT' and row['n'] == 10000:
            goals.append(('on_create re-run at N=10000', '%.2f s' % row['rerun_on_create'], '2.00 s',
                          row['rerun_on_create'] < 2))
            goals.append(('peak RSS of the module at N=10000', '%.0f MiB' % max(row['rss_create'], row['rss_rerun']),
                          '150 MiB', max(row['rss_create'], row['rss_rerun']) < 150))
        if row['scheme'] == 'SHA512-CRYPT' and row['n'] == 1000:
            ratio = slope * 1000 / row['create']
            goals.append(('bulk vs loop of tasks at N=1000 (loop slope x 1000 / bulk)', '%.0f x' % ratio, '50 x',
                          ratio >= 50))
        if row['scheme'] == 'SHA512-CRYPT' and row['n'] in cli:
            ratio = cli[row['n']] / row['create']
            goals.append(('bulk vs CLI-style baseline at N=%d' % row['n'], '%.1f x faster' % ratio, '> 1 x',
                          ratio > 1))
    for name, measured, target, met in goals:
        print('| %s | %s | %s | %s |' % (name, measured, target, 'yes' if met else 'NO'))
    missed = [g for g in goals if not g[3]]
    print()
    print('%d of %d goals met' % (len(goals) - len(missed), len(goals)))


if __name__ == '__main__':
    main()
