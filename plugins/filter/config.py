# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The mailserver role's plan for DMS's override files: which dms_config calls, and the record of what it manages."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

RECORD_VERSION = 1
KEYED = ('settings', 'services', 'sections')
ITEM_OPTIONS = ('file', 'settings', 'services', 'sections', 'content', 'state', 'exclusive', 'force', 'mode',
                'no_log_content', 'release_line')


def _fail(message):
    raise AnsibleFilterError('dms_config_plan: %s' % message)


def _previous(record):
    if not record:
        return {}
    if not isinstance(record, dict) or not isinstance(record.get('files', {}), dict):
        _fail('the record of the files the role manages is not a mapping; remove it to start afresh')
    return record.get('files', {})


def dms_config_plan(record, postfix_main=None, dovecot_conf=None, files=None, line=None):
    """``{'calls': [dms_config arguments, ...], 'record': {...}}``.

    The role's own variables (``dms_postfix_main``, ``dms_dovecot_conf``, with ``dms_recipient_delimiter`` merged
    in) become items for ``postfix-main.cf`` and ``dovecot.cf``; ``dms_config_files`` adds its items as they are
    (``release_line`` defaults to the role's line).  What the previous run recorded and this run no longer
    manages is removed first: keys and sections with ``state: absent``, whole files given by ``content``.
    """
    items = []
    if postfix_main:
        items.append({'file': 'postfix-main.cf', 'settings': dict(postfix_main)})
    if dovecot_conf:
        items.append({'file': 'dovecot.cf', 'settings': dict(dovecot_conf)})
    for index, item in enumerate(files or []):
        if not isinstance(item, dict) or not item.get('file'):
            _fail('dms_config_files[%d] must be a mapping with at least "file"' % index)
        unknown = sorted(set(item) - set(ITEM_OPTIONS))
        if unknown:
            _fail('dms_config_files[%d] has options dms_config does not take: %s' % (index, ', '.join(unknown)))
        items.append(dict(item))

    managed = {}
    for item in items:
        if item.get('file') == 'dovecot.cf' and not item.get('release_line') and line:
            item['release_line'] = str(line)
        if item.get('state', 'present') != 'present':
            continue
        entry = managed.setdefault(item['file'], {'settings': [], 'services': [], 'sections': [], 'content': False})
        for option in KEYED:
            for key, value in (item.get(option) or {}).items():
                if value is not None and key not in entry[option]:
                    entry[option].append(key)
        if item.get('content') is not None:
            entry['content'] = True

    removals = []
    for name, old in sorted(_previous(record).items()):
        new = managed.get(name, {'settings': [], 'services': [], 'sections': [], 'content': False})
        if old.get('content') and not new['content']:
            removals.append({'file': name, 'state': 'absent'})
            continue
        call = {'file': name, 'state': 'absent'}
        for option in KEYED:
            gone = [key for key in old.get(option, []) if key not in new[option]]
            if gone:
                call[option] = dict((key, None) for key in gone)
        if any(option in call for option in KEYED):
            removals.append(call)

    for entry in managed.values():
        for option in KEYED:
            entry[option] = sorted(entry[option])
    return {'calls': removals + items, 'record': {'version': RECORD_VERSION, 'files': managed}}


class FilterModule:
    def filters(self):
        return {'dms_config_plan': dms_config_plan}
