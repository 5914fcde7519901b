# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""What every dms.mailserver state module shares: options, the run, the result."""

from __future__ import annotations

import os
import stat

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


def _strings(value, out):
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(key, out)
            _strings(item, out)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            _strings(item, out)
    return out


def prune_no_log_values(module, result):
    """Keep only the no_log values that occur in ``result`` before exit_json masks them.

    ``exit_json`` replaces every no_log value found in any output string: with
    thousands of passwords and thousands of addresses in the result that is
    quadratic (half a minute at 10,000 accounts).  A value that occurs nowhere
    in the output has nothing to mask, so it is dropped from the set first.
    Occurrence is found with one pass per distinct value length over the output
    (hash lookups of every substring of that length), which finds exactly the
    values ``exit_json`` would replace; those stay and are masked as usual.
    """
    values = set(v for v in module.no_log_values if isinstance(v, str) and v)
    if len(values) < 64:
        return
    strings = _strings(result, [])
    present = set()
    for length in set(len(v) for v in values):
        for text in strings:
            if len(text) < length:
                continue
            for start in range(len(text) - length + 1):
                piece = text[start:start + length]
                if piece in values:
                    present.add(piece)
    module.no_log_values = set(v for v in module.no_log_values if not isinstance(v, str) or v in present)


def mode_diffs(cfg, mode_fixes):
    """Diff entries for files whose mode a run corrects (``_mode_fixes``), so diff mode shows it too."""
    out = []
    for relpath, mode in mode_fixes:
        if cfg.mode_fix_needed(relpath, mode):
            current = stat.S_IMODE(os.stat(cfg.abspath(relpath)).st_mode)
            header = '%s (mode)' % relpath
            out.append({'before_header': header, 'after_header': header,
                        'before': 'mode %04o\n' % current, 'after': 'mode %04o\n' % mode})
    return out


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
            diff = cfg.diff() + mode_diffs(cfg, extra_mode_fixes) if module._diff else None
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
    prune_no_log_values(module, result)
    module.exit_json(**result)


def run_module(module, normalize, plan):
    """The body every state module shares.

    ``normalize(params)`` validates the options and returns a tuple whose last
    item is a list of warnings; the other items are handed to
    ``plan(cfg, *items)``, which edits the locked config dir (see
    :func:`run_transaction`).  Validation errors end in ``fail_json`` before the
    config dir is touched; warnings from either step reach ``module.warn``.
    """
    try:
        prepared = normalize(module.params)
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    *items, warnings = prepared
    for warning in warnings:
        module.warn(warning)

    def _plan(cfg):
        result = plan(cfg, *items)
        for warning in result.pop('_warnings', ()):
            module.warn(warning)
        return result

    run_transaction(module, _plan)
