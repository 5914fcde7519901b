# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""What every dms.mailserver state module shares: options, the run, the result."""

from __future__ import annotations

from ansible_collections.dms.mailserver.plugins.module_utils._configdir import (
    DEFAULT_CONFIG_DIR, ConfigDir, ConfigDirError,
)
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError


def common_argument_spec():
    """Options documented in the ``dms.mailserver.common`` doc fragment."""
    return dict(
        config_dir=dict(type='path', default=DEFAULT_CONFIG_DIR),
        backup=dict(type='bool', default=False),
        lock_timeout=dict(type='int', default=30),
    )


def item_path(params, list_option, index, field):
    """The name of a field for error messages: ``accounts[2].address`` or ``address``."""
    if list_option and index is not None:
        return '%s[%d].%s' % (list_option, index, field)
    return field


def run_transaction(module, plan):
    """Lock the config dir, let ``plan(cfg)`` edit it, write, and exit the module.

    ``plan`` returns a dict of result values (``created``, ``updated`` …) and
    may set ``restart_required``.  Validation errors and config-dir errors end
    in ``fail_json`` with nothing written.
    """
    params = module.params
    if params['lock_timeout'] < 0:
        module.fail_json(msg='lock_timeout: %r must be 0 or more seconds' % params['lock_timeout'])
    try:
        cfg = ConfigDir(params['config_dir'], lock_timeout=params['lock_timeout'], backup=params['backup'],
                        check_mode=module.check_mode, backup_func=module.backup_local)
        with cfg:
            result = plan(cfg)
            extra_mode_fixes = result.pop('_mode_fixes', ())
            extra_owner_fixes = result.pop('_owner_fixes', ())
            diff = cfg.diff() if module._diff else None
            changed_files, backup_files = cfg.commit(extra_mode_fixes=extra_mode_fixes,
                                                     extra_owner_fixes=extra_owner_fixes)
    except (ValidationError, ConfigDirError) as exc:
        module.fail_json(msg=str(exc))
    changed = bool(changed_files) or bool(result.pop('_changed', False))
    result.update(changed=changed, changed_files=changed_files, config_dir=cfg.path)
    if params['backup']:
        result['backup_files'] = backup_files
    if diff is not None:
        result['diff'] = diff
    module.exit_json(**result)
