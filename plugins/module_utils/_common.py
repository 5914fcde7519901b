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


def entries_of(params, list_option, fields, what, defaults=None):
    """The entries a call names: one per item of the bulk option ``list_option`` (each with every key of
    ``fields``; those an item leaves unset get ``defaults``, by default the call's ``state``), or else the one entry
    the single-entry options make. Returns ``(list_option or None, [(index or None, entry), ...])``.

    ``exclusive`` without the bulk option is refused (``what``: what one item is, for the message)."""
    if defaults is None:
        defaults = {'state': params.get('state')}
    if params.get(list_option) is not None:
        out = []
        for index, item in enumerate(params[list_option]):
            entry = dict((k, item.get(k)) for k in fields)
            for name, value in defaults.items():
                if entry[name] is None:
                    entry[name] = value
            out.append((index, entry))
        return list_option, out
    if params.get('exclusive'):
        raise ValidationError('exclusive: needs the %s list (every %s to keep)' % (list_option, what))
    return None, [(None, dict((k, params.get(k)) for k in fields))]


def item_path(params, list_option, index, field):
    """The name of a field for error messages: ``accounts[2].address`` or ``address``."""
    if list_option and index is not None:
        return '%s[%d].%s' % (list_option, index, field)
    return field


def _strings(value, out):
    """Every string of a result, keys included, and numbers as text (exit_json masks those too)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(str(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(key, out)
            _strings(item, out)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            _strings(item, out)
    return out


# What ansible-core puts in place of a no_log option's value in the echoed module arguments.
NO_LOG_MASK = 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'


def _spec_by_name(spec):
    """An argument spec keyed by option name and by every alias of it."""
    out = dict(spec)
    for option in spec.values():
        for alias in option.get('aliases') or ():
            out[alias] = option
    return out


# Bulk lists (accounts, aliases, relays) longer than this are echoed as a count, not entry by entry.
ECHO_LIMIT = 1000


def masked_params(spec, params, limit=ECHO_LIMIT):
    """A copy of ``params`` with the value of every no_log option (also in suboptions) replaced by the mask.

    What ``exit_json`` echoes as ``invocation.module_args``.  The masking is by option, so it does not depend on
    searching the output for the values.  A list of suboption entries longer than ``limit`` is echoed as a
    string that gives its length: carried through ansible-core's worker, callbacks and AWX's job events, a
    10,000-entry echo costs about as much time as the module's own work on an unchanged config dir, and nobody
    reads it (the results ``created``, ``updated`` and ``removed`` and the error messages name the entries).
    """
    by_name = _spec_by_name(spec)
    out = {}
    for name, value in params.items():
        option = by_name.get(name) or {}
        suboptions = option.get('options')
        if option.get('no_log') and value is not None and not isinstance(value, bool):
            out[name] = NO_LOG_MASK
        elif suboptions and isinstance(value, list) and len(value) > limit:
            out[name] = '<%d entries, not echoed: more than %d>' % (len(value), limit)
        elif suboptions and isinstance(value, list):
            out[name] = [masked_params(suboptions, item, limit) if isinstance(item, dict) else item
                         for item in value]
        elif suboptions and isinstance(value, dict):
            out[name] = masked_params(suboptions, value, limit)
        else:
            out[name] = value
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

    ``result`` must already hold everything that will be output, the echoed
    module arguments included (see :func:`finish`): a value missing from the
    scan would be dropped from the set and then shown in clear.
    """
    values = set(v for v in module.no_log_values if isinstance(v, str) and v)
    if len(values) < 64:
        return
    present = _occurring(values, set(_strings(result, [])))
    module.no_log_values = set(v for v in module.no_log_values if not isinstance(v, str) or v in present)


def _occurring(values, strings):
    """The members of ``values`` that occur as a substring of any of ``strings``.

    The strings are joined with NUL so that the slicing runs in C over one
    text, one pass per distinct value length; each pass is intersected as it is
    produced, so memory stays at the size of the text.  A piece spanning two
    strings can only add a candidate (masked needlessly), never lose one.
    """
    text = '\x00'.join(strings)
    size = len(text)
    by_length = {}
    for value in values:
        by_length.setdefault(len(value), set()).add(value)
    present = set()
    for length, group in by_length.items():
        if length <= size:
            present |= group.intersection(
                map(text.__getitem__, map(slice, range(size - length + 1), range(length, size + 1))))
    return present


def finish(module, result, failed=False):
    """``exit_json``/``fail_json`` with the module arguments echoed masked by option, not by value search.

    The echo (``invocation.module_args``) is built here with no_log options
    masked; then the remaining no_log values are pruned to those that occur in
    the output, so ansible-core's value search stays linear at 10,000 entries
    and still masks any secret that turns up elsewhere in the output.
    """
    result = dict(result)
    result['invocation'] = {'module_args': masked_params(module.argument_spec, module.params)}
    prune_no_log_values(module, result)
    if failed:
        msg = result.pop('msg')
        module.fail_json(msg=msg, **result)
    module.exit_json(**result)


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
        # Backups are made by ConfigDir itself (Ansible's naming), through a temp file: module.backup_local
        # would leave a partial copy and the run's temp files behind when the disk fills up.
        cfg = ConfigDir(params['config_dir'], lock_timeout=params['lock_timeout'], backup=params['backup'],
                        check_mode=module.check_mode)
        with cfg:
            result = plan(cfg)
            extra_mode_fixes = result.pop('_mode_fixes', ())
            extra_owner_fixes = result.pop('_owner_fixes', ())
            diff = cfg.diff() + mode_diffs(cfg, extra_mode_fixes) if module._diff else None
            changed_files, backup_files = cfg.commit(extra_mode_fixes=extra_mode_fixes,
                                                     extra_owner_fixes=extra_owner_fixes)
    except (ValidationError, ConfigDirError) as exc:
        finish(module, {'msg': str(exc)}, failed=True)
    changed = bool(changed_files) or bool(result.pop('_changed', False))
    result.update(changed=changed, changed_files=changed_files, config_dir=cfg.path)
    if params['backup']:
        result['backup_files'] = backup_files
    if diff is not None:
        result['diff'] = diff
    finish(module, result)


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
        finish(module, {'msg': str(exc)}, failed=True)
    *items, warnings = prepared
    for warning in warnings:
        module.warn(warning)

    def _plan(cfg):
        result = plan(cfg, *items)
        for warning in result.pop('_warnings', ()):
            module.warn(warning)
        return result

    run_transaction(module, _plan)
