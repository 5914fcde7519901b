# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of dms_info: accounts only (gather: [accounts]) at 100, 1,000 and 10,000 accounts.

Run through ``bench/run info``, which prepares the venv and the staged collection.  "Module time" is a
playbook's wall time minus the wall time of an empty playbook measured in the same run (medians of three), as in
bench.py.  The config dir is written directly in DMS's formats (an account line per address with a fixed
SHA512-CRYPT hash, a quota for every other account, a send restriction for every tenth, an alias for every
fifth): dms_info never hashes, so the hashes' content does not matter.  Prints the table and the goal as a ratio
measured in this run (goal: under 1.5 s of module time at 10,000 accounts).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import empty_playbook, measure_module

GOAL_SECONDS = 1.5
HASH = '{SHA512-CRYPT}$6$benchbenchbenchb$' + 'h' * 86


def write_config(cfg, n):
    cfg.mkdir(parents=True)
    addresses = ['u%05d@bench.example' % i for i in range(n)]
    (cfg / 'postfix-accounts.cf').write_text(''.join('%s|%s\n' % (a, HASH) for a in addresses))
    (cfg / 'dovecot-quotas.cf').write_text(''.join('%s:%dM\n' % (a, 100 + i) for i, a in enumerate(addresses)
                                                   if i % 2 == 0))
    (cfg / 'postfix-send-access.cf').write_text(''.join('%s \t\t REJECT\n' % a for i, a in enumerate(addresses)
                                                        if i % 10 == 0))
    (cfg / 'postfix-virtual.cf').write_text(''.join('alias%05d@bench.example %s\n' % (i, a)
                                                    for i, a in enumerate(addresses) if i % 5 == 0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='100,1000,10000')
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    rows = []
    with tempfile.TemporaryDirectory(prefix='dms-bench-info-') as tmp:
        empty = empty_playbook(tmp, repeat=args.repeat)
        for n in sizes:
            cfg = Path(tmp) / ('cfg-%d' % n)
            write_config(cfg, n)
            task = [{'name': 'info', 'dms.mailserver.dms_info': {'config_dir': str(cfg), 'gather': ['accounts']}}]
            runs = [measure_module(tmp, task, 'info-%d' % n) for dummy in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            rows.append((n, wall - empty, max(r[1] for r in runs), runs[0][2]))
    print('empty playbook: %.2f s (median of %d)' % (empty, args.repeat))
    print()
    print('| accounts | module time | peak RSS | changed |')
    print('|---:|---:|---:|---:|')
    for n, module, rss, changed in rows:
        print('| %d | %.2f s | %.0f MiB | %d |' % (n, module, rss, changed))
    print()
    print('| goal | measured | target | ratio (measured / target) | met |')
    print('|---|---|---|---|---|')
    met = True
    for n, module, rss, changed in rows:
        if n == 10000:
            ok = module < GOAL_SECONDS and changed == 0
            met &= ok
            print('| dms_info gather=[accounts] at N=10000 | %.2f s | < %.1f s | %.2f | %s |'
                  % (module, GOAL_SECONDS, module / GOAL_SECONDS, 'yes' if ok else 'NO'))
    return 0 if met else 1


if __name__ == '__main__':
    raise SystemExit(main())
