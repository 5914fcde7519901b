# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The library matrix shares the integration tests' helpers (dmstest) and prints what it ran."""
from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / 'integration'):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import compat  # noqa: E402  (needs the path above)


def pytest_terminal_summary(terminalreporter):
    """Which library sets on which Pythons ran, and which were skipped (and why)."""
    if not compat.NOTES:
        return
    terminalreporter.section('hashing library matrix')
    for line in compat.NOTES:
        terminalreporter.write_line(line)
