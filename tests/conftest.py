# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the staged collection importable as ansible_collections.dms.mailserver.

hack/test.sh copies the tree to .build/collections/ansible_collections/dms/mailserver
and runs pytest there.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if _ROOT.parts[-3:] != ('ansible_collections', 'dms', 'mailserver'):
    raise RuntimeError('run the tests through hack/test.sh (or make test): it stages the collection as '
                       'ansible_collections/dms/mailserver, which these imports need')
_COLLECTIONS = str(_ROOT.parents[2])
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
