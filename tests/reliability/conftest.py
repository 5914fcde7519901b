# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reliability suite shares the integration tests' helpers (dmstest) and prints what it measured."""
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / 'integration'):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import reltest  # noqa: E402  (needs the path above)


def pytest_terminal_summary(terminalreporter):
    """The counts the tests measured (crash trials that died mid-commit, sampler coverage …)."""
    if not reltest.STATS:
        return
    terminalreporter.section('reliability measurements')
    for line in reltest.STATS:
        terminalreporter.write_line(line)
