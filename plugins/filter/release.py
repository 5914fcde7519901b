# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters for what differs between DMS release lines (15.1 with Dovecot 2.3, 16 with Dovecot 2.4)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.module_utils import _dovecot
from ansible_collections.dms.mailserver.plugins.module_utils._release import release_line


def dms_release_line(image, line=''):
    """``{'line': '15'|'16'|None, 'error': ''|message}`` for an image reference and an optional explicit line."""
    found, error = release_line(image, line)
    return {'line': found, 'error': error}


def dms_dovecot_problems(settings, line, field='dms_dovecot_conf'):
    """Messages for every top-level Dovecot setting (name or value) the line's Dovecot would not take."""
    try:
        return _dovecot.problems(settings, line, field)
    except ValueError as exc:
        raise AnsibleFilterError('dms_dovecot_problems: %s' % exc)


class FilterModule:
    def filters(self):
        return {
            'dms_release_line': dms_release_line,
            'dms_dovecot_problems': dms_dovecot_problems,
        }
