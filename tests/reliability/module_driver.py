# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one dms.mailserver module in this process, as Ansible runs it, and tell a watcher where it is.

Usage: python module_driver.py MODULE ARGS_FILE

ARGS_FILE holds ``{"ANSIBLE_MODULE_ARGS": {...}}``; the module's own ``main()`` runs unchanged.  The driver only
wraps functions from the outside to report progress on the pipe whose fd is in ``DMS_CRASH_SIGNAL_FD``:

* ``C`` when ``ConfigDir.commit`` starts, ``W`` when it creates its first temp file, ``R`` right before its
  first rename, ``E`` when it has returned;
* ``H`` when a batch of password hashing starts (``dms_account``, ``dms_dovecot_master``);
* ``P`` when, with ``DMS_CRASH_PAUSE_AT_RENAME=k``, the commit is about to make its k-th rename: the driver then
  sleeps there until it is killed (a deterministic kill point between two renames).

With ``DMS_CRASH_DKIM_KEY`` set to a PEM file, ``dms_dkim`` uses that key instead of generating one, so the
test knows every byte of the "new" version of each file.
"""
from __future__ import annotations

import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

_COLLECTION = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_COLLECTION.parents[2]))

# pylint: disable=wrong-import-position
from ansible_collections.dms.mailserver.plugins.module_utils import _configdir, _dkim, _passwords  # noqa: E402

_FD = int(os.environ.get('DMS_CRASH_SIGNAL_FD', '-1'))


def _say(code):
    if _FD >= 0:
        os.write(_FD, code)


_STATE = {'in_commit': False, 'renames': 0, 'temps': 0}


def _wrap_commit(original):
    def commit(self, *args, **kwargs):
        _say(b'C')
        _STATE['in_commit'] = True
        result = original(self, *args, **kwargs)
        _STATE['in_commit'] = False
        _say(b'E')
        return result
    return commit


def _wrap_rename(original, pause_at):
    def rename(src, dst, *args, **kwargs):
        if _STATE['in_commit']:
            _STATE['renames'] += 1
            if _STATE['renames'] == 1:
                _say(b'R')
            if _STATE['renames'] == pause_at:
                _say(b'P')
                time.sleep(3600)
        return original(src, dst, *args, **kwargs)
    return rename


def _wrap_mkstemp(original):
    def mkstemp(*args, **kwargs):
        result = original(*args, **kwargs)
        if _STATE['in_commit']:
            _STATE['temps'] += 1
            if _STATE['temps'] == 1:
                _say(b'W')
        return result
    return mkstemp


def _wrap_run_jobs(original):
    def run_jobs(jobs, *args, **kwargs):
        _say(b'H')
        return original(jobs, *args, **kwargs)
    return run_jobs


def main():
    module, args_file = sys.argv[1], sys.argv[2]
    _configdir.ConfigDir.commit = _wrap_commit(_configdir.ConfigDir.commit)
    _passwords.run_jobs = _wrap_run_jobs(_passwords.run_jobs)
    os.rename = _wrap_rename(os.rename, int(os.environ.get('DMS_CRASH_PAUSE_AT_RENAME', '0')))
    tempfile.mkstemp = _wrap_mkstemp(tempfile.mkstemp)
    key_file = os.environ.get('DMS_CRASH_DKIM_KEY')
    if key_file:
        with open(key_file) as handle:
            fixed = _dkim.load_private_key(handle.read(), key_file)
        _dkim.plan.__defaults__ = (lambda key_type, key_size: fixed,)
    path = str(_COLLECTION / 'plugins' / 'modules' / ('%s.py' % module))
    sys.argv = [path, args_file]
    runpy.run_path(path, run_name='__main__')


if __name__ == '__main__':
    main()
