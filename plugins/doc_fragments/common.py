# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Options and attributes shared by every dms.mailserver state module."""

    DOCUMENTATION = r'''
options:
  config_dir:
    description:
      - The DMS config directory on the managed host, the host side of the volume DMS mounts at
        C(/tmp/docker-mailserver).
      - Created (mode C(0755)) when it does not exist, so state can be written before the container first starts.
      - Set it once for all modules with C(module_defaults) and the action group C(group/dms.mailserver.dms).
    type: path
    default: /opt/docker-mailserver/docker-data/dms/config
  backup:
    description:
      - Keep a copy of every file the module replaces, next to it, named C(<file>.<pid>.<timestamp>~).
      - The copies are listed in RV(backup_files).
    type: bool
    default: false
  lock_timeout:
    description:
      - How many seconds to wait for the config dir's lock (C(<config_dir>/.dms-mailserver.lock)) while
        another run holds it. The module fails with a clear message when the lock is not free in time.
      - Every module of this collection holds the lock from its first read to its last write, so concurrent
        runs against one config dir never lose an update.
    type: int
    default: 30
notes:
  - Files are written atomically (temp file in the same directory, fsync, rename) with their previous owner and
    mode; new files get the owner of O(config_dir). Comments, blank lines and lines the module does not manage
    are kept as they are. A file that is rewritten is written with LF line endings and a final newline, as DMS
    itself normalises them.
  - Files that resolve through a symlink to a place outside O(config_dir) are refused.
  - The module arguments echoed in the result (C(invocation.module_args), shown at C(-vvv) and stored by AWX with
    each job event) have every password masked. A list of entries longer than 1,000 (such as C(accounts),
    C(aliases) or C(relays)) is echoed as a count instead of entry by entry; the results name the
    entries that changed.
'''

    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Whether C(--check) runs predict changes without making them.
    support: full
    details:
      - Reports exactly the changes a real run would make, and writes nothing (not even the lock file).
  diff_mode:
    description: Whether C(--diff) shows what changed (or, with C(--check), what would change).
    support: full
    details:
      - Shows the changed files with password hashes, passwords and keys replaced by numbered placeholders
        (equal secrets get equal placeholders, so a changed secret still shows as a changed line).
  platform:
    description: The systems the module can manage.
    support: full
    platforms: posix
  action_group:
    description: The action group through which C(module_defaults) reach this module.
    support: full
    membership:
      - dms.mailserver.dms
'''
