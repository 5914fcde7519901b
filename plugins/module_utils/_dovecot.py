# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Top-level Dovecot settings for DMS's ``dovecot.cf``, checked against the Dovecot of a DMS release line.

DMS copies ``dovecot.cf`` into Dovecot's config unchecked. A setting the line's Dovecot does not know stops Dovecot
(it exits and is restarted in a loop) while DMS still reports itself up, so settings are checked here before
anything is written. DMS 15.1 runs Dovecot 2.3, DMS 16 Dovecot 2.4, which renamed or removed many settings and
moved plugin settings from ``plugin { }`` to the top level.

Settings are a flat mapping ``{name: value}``, one ``name = value`` line each. Besides plain names, a key may be
``plugin/<name>`` on Dovecot 2.3 (a setting inside ``plugin { }``) or ``<list>/<item>`` on Dovecot 2.4 (an item of
a list setting, for example ``mail_plugins/quota = yes``). Both forms were checked with ``doveconf``.

The names each line accepts come from ``doveconf -a`` (see ``_dovecot_settings.py``); what became of a 2.3 name in
2.4 is taken from Dovecot's 2.3-to-2.4 upgrade notes.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.dms.mailserver.plugins.module_utils import _dovecot_settings as known
from ansible_collections.dms.mailserver.plugins.module_utils._release import DOVECOT, LINES

# Top-level settings that Dovecot 2.4.1 accepts but its `doveconf -a` does not print, so the generated lists lack
# them (without these, dms_config refused login_greeting for DMS 16 as "a 2.3 setting 2.4 does not have"). Found by
# writing each 2.3 name missing from the 2.4 list alone into local.conf of dms-test:16 (Dovecot 2.4.1): for these,
# doveconf -n accepted the line or complained only about its (empty) value, never "Unknown setting".
NOT_IN_DOVECONF_A = {
    '15': frozenset(),
    '16': frozenset((
        'auth_policy_hash_truncate auth_username_translation base_dir dsync_hashed_headers imap_idle_notify_interval '
        'imap_max_line_length libexec_dir lmtp_verbose_replies login_greeting mail_full_filesystem_access '
        'mail_max_keyword_length mail_save_crlf mailbox_idle_check_interval mbox_md5 mbox_min_index_size state_dir'
    ).split()),
}
# The top-level setting names each line accepts.
SETTINGS = dict((line, frozenset(names) | NOT_IN_DOVECONF_A[line]) for line, names in known.SETTINGS.items())

# Dovecot 2.3 name -> what Dovecot 2.4 has instead. A plain name is a straight rename; other text explains.
# Names that were plugin settings in 2.3 (inside plugin { }) are included: in 2.4 they are top-level settings.
RENAMED_IN_24 = {
    'disable_plaintext_auth': ('auth_allow_cleartext', 'with the opposite meaning: disable_plaintext_auth = no '
                               'becomes auth_allow_cleartext = yes'),
    'ssl_cert': ('ssl_server_cert_file', 'its value is the file path itself, without the leading <'),
    'ssl_key': ('ssl_server_key_file', 'its value is the file path itself, without the leading <'),
    'ssl_alt_cert': ('ssl_server_alt_cert_file', 'its value is the file path itself, without the leading <'),
    'ssl_alt_key': ('ssl_server_alt_key_file', 'its value is the file path itself, without the leading <'),
    'ssl_dh': ('ssl_server_dh_file', 'its value is the file path itself, without the leading <'),
    'ssl_ca': (None, 'use ssl_server_ca_file (client certificates) or ssl_client_ca_file (outgoing connections)'),
    'ssl_cert_username_field': ('ssl_server_cert_username_field', ''),
    'ssl_client_cert': ('ssl_client_cert_file', ''),
    'ssl_client_key': ('ssl_client_key_file', ''),
    'ssl_key_password': ('ssl_server_key_password', ''),
    'ssl_prefer_server_ciphers': ('ssl_server_prefer_ciphers', 'its values are client and server instead of '
                                  'no and yes'),
    'ssl_require_crl': ('ssl_server_require_crl', ''),
    'ssl_verify_client_cert': ('ssl_server_request_client_cert', ''),
    'verbose_ssl': (None, 'use log_debug = category=ssl'),
    'auth_default_realm': ('auth_default_domain', ''),
    'auth_worker_max_count': (None, 'limit the auth-worker service\'s process_limit instead (a service section)'),
    'auth_stats': (None, 'removed it without a replacement'),
    'default_idle_kill': ('default_idle_kill_interval', ''),
    'dict_db_config': (None, 'removed it: Berkeley DB is no longer supported'),
    'imap_id_log': (None, 'removed it: the imap_id_received event replaces it'),
    'login_access_sockets': (None, 'removed it: use Lua authentication instead'),
    'mail_location': (None, 'split into mail_driver and mail_path (and mail_index_path and others): '
                            'maildir:/var/mail/%d/%n becomes mail_driver = maildir and '
                            'mail_path = /var/mail/%{user | domain}/%{user | username}'),
    'mail_attachment_dir': ('mail_ext_attachment_path', ''),
    'mail_attachment_hash': (None, 'removed it (Dovecot 2.4.1 has no setting for the attachment hash)'),
    'mail_attachment_min_size': ('mail_ext_attachment_min_size', ''),
    'mail_attachment_fs': (None, 'use fs inside the mail_ext_attachment section'),
    'mail_attribute_dict': (None, 'use dict inside the mail_attribute section'),
    # plugin { } settings of 2.3
    'acl': ('acl_driver', ''),
    'acl_anyone': ('imap_acl_allow_anyone', ''),
    'lazy_expunge': ('lazy_expunge_mailbox', ''),
    'fts': (None, 'use fts_driver'),
    'fts_index_timeout': ('fts_search_timeout', ''),
    'fts_language_config': ('textcat_config_path', ''),
    'fts_enforced': (None, 'replaced by fts_search_add_missing and fts_search_read_fallback'),
    'push_notification_backend': ('push_notification_driver', ''),
    'quota': (None, 'use quota_driver (for example quota_driver = count)'),
    'quota_rule': (None, 'use quota_storage_size for the size (quota_storage_extra inside a mailbox section '
                         'for extra room in one mailbox)'),
    'quota_grace': ('quota_storage_grace', 'its value is a size such as 10M'),
    'quota_max_mail_size': ('quota_mail_size', ''),
    'quota_over_flag': ('quota_over_status_current', ''),
    'quota_over_flag_value': ('quota_over_status_mask', ''),
    'quota_over_flag_lazy_check': ('quota_over_status_lazy_check', ''),
    'sieve': (None, 'use a sieve_script section (for example sieve_script personal { path = ... })'),
    'sieve_before': (None, 'use a sieve_script section with type = before'),
    'sieve_after': (None, 'use a sieve_script section with type = after'),
    'sieve_default': (None, 'use a sieve_script section with type = default'),
    'sieve_dir': (None, 'removed it: sieve_script sections give the location'),
    'sieve_global_dir': (None, 'removed it: sieve_script sections give the location'),
    'sieve_global_path': (None, 'removed it: sieve_script sections give the location'),
}

# Dovecot 2.4 name -> the Dovecot 2.3 name, where the rename is one to one.
RENAMED_FROM_23 = dict((new, (old, note)) for old, (new, note) in RENAMED_IN_24.items() if new)

# Dovecot 2.3's short variables and the Dovecot 2.4 forms (Dovecot's upgrade notes).
SHORT_VARIABLES = {
    'u': '%{user}', 'n': '%{user | username}', 'd': '%{user | domain}', 'h': '%{home}', 's': '%{protocol}',
    'r': '%{remote_ip}', 'l': '%{local_ip}', 'a': '%{local_port}', 'b': '%{remote_port}', 'p': '%{client_pid}',
    'm': '%{mechanism}', 'w': '%{password}',
}
# Values that are strftime() formats in both versions, where %d, %H ... are not Dovecot variables.
STRFTIME_SETTINGS = frozenset(('log_timestamp',))

_NAME = re.compile(r'^[a-z0-9_]+$')
_SHORT_VAR = re.compile(r'%%|%([-0-9.]*[A-Za-z])')
_PIPE_VAR = re.compile(r'%\{[^}]*\|[^}]*\}')
_SETTING_REF = re.compile(r'\$(?!SET:|ENV:)([a-z][a-z0-9_]*)')


def _line(line):
    line = str(line)
    if line not in LINES:
        raise ValueError('unknown DMS release line %r (use %s)' % (line, ' or '.join(LINES)))
    return line


def _near(name, line):
    matches = difflib.get_close_matches(name, SETTINGS[line], n=1, cutoff=0.85)
    return ' (did you mean %s?)' % matches[0] if matches else ''


def _on_24(name):
    """Why a 2.3 name is not a 2.4 name, and what to write instead."""
    new, note = RENAMED_IN_24[name]
    if new:
        return 'Dovecot 2.4 renamed it to %s%s' % (new, '; ' + note if note else '')
    if note.startswith('removed'):
        return 'Dovecot 2.4 %s' % note
    return 'Dovecot 2.4 replaced it: %s' % note


def name_problem(key, line, field='dms_dovecot_conf'):
    """Why ``key`` cannot be written as a top-level setting for ``line`` (None when it can)."""
    line = _line(line)
    version = DOVECOT[line]
    where = '%s.%s' % (field, key)
    if not isinstance(key, str) or not key:
        return '%s: a setting name must be a non-empty string' % where
    parts = key.split('/')
    if not all(_NAME.match(part) for part in parts):
        return ('%s: not a Dovecot setting name (lower-case letters, digits and _; a / only as in plugin/<name> '
                'for Dovecot 2.3 or <list>/<item> for Dovecot 2.4)' % where)
    name = parts[0]
    if len(parts) > 1:
        if line == '15':
            if name == 'plugin' and len(parts) == 2:
                return None
            return ('%s: with DMS 15 (Dovecot 2.3) only plugin settings can be written with a path '
                    '(plugin/<name>)' % where)
        if name == 'plugin':
            inner = parts[1]
            hint = ('; ' + _on_24(inner)) if inner in RENAMED_IN_24 else (
                ': write %s' % inner if inner in SETTINGS[line] else '')
            return ('%s: Dovecot 2.4 (DMS 16) has no plugin section; plugin settings are top-level '
                    'settings%s' % (where, hint))
        if len(parts) > 2:
            return ('%s: only <list>/<item> of a top-level Dovecot 2.4 setting can be written (such as '
                    'mail_plugins/quota); longer paths (filters) are not written by %s' % (where, field))
        if name in SETTINGS[line]:
            return None
        return ('%s: only <list>/<item> of a top-level Dovecot 2.4 setting can be written (such as '
                'mail_plugins/quota); %s is not one%s' % (where, name, _near(name, line)))
    if key in SETTINGS[line]:
        return None
    if key == 'plugin' and line == '16':
        return ('%s: Dovecot 2.4 (DMS 16) has no plugin section; plugin settings are top-level settings'
                % where)
    if key in known.SECTIONS[line] or key in ('plugin', 'protocol', 'local', 'remote'):
        return ('%s: %s is a section in Dovecot %s, not a single setting; %s writes single settings only'
                % (where, key, version, field))
    if line == '16':
        if key in RENAMED_IN_24:
            return '%s: not a setting of Dovecot 2.4 (DMS 16): %s' % (where, _on_24(key))
        if key in SETTINGS['15']:
            return ('%s: a Dovecot 2.3 setting that Dovecot 2.4 (DMS 16) does not have (see Dovecot\'s '
                    '2.3-to-2.4 upgrade notes)' % where)
        return '%s: not a setting of Dovecot 2.4 (DMS 16)%s' % (where, _near(key, line))
    if key in RENAMED_FROM_23:
        old, note = RENAMED_FROM_23[key]
        form = old if old in SETTINGS['15'] else 'plugin/%s' % old
        return ('%s: a Dovecot 2.4 name; DMS 15 runs Dovecot 2.3, where it is %s%s'
                % (where, form, ' (' + note + ')' if note else ''))
    if key in SETTINGS['16']:
        return ('%s: not a top-level setting of Dovecot 2.3 (DMS 15); it exists in Dovecot 2.4 (DMS 16). If it is '
                'a 2.3 plugin setting, write it as plugin/%s' % (where, key))
    return ('%s: not a top-level setting of Dovecot 2.3 (DMS 15)%s; a plugin setting is written as plugin/%s'
            % (where, _near(key, line), key))


def value_problems(key, value, line, field='dms_dovecot_conf'):
    """Why ``value`` is not right for ``key`` on ``line``. The messages quote only the offending part."""
    line = _line(line)
    where = '%s.%s' % (field, key)
    # dms_config writes booleans as yes or no and joins lists with a space.
    if isinstance(value, bool):
        return []
    if value is None:
        return ['%s: no value; write \'\' for an empty one' % where]
    if isinstance(value, (list, tuple)) and value and \
            all(isinstance(item, (str, int, float)) for item in value):
        value = ' '.join('yes' if item is True else 'no' if item is False else str(item) for item in value)
    if not isinstance(value, (str, int, float)):
        return ['%s: the value must be a string, a number, a boolean or a list of those (%s writes single '
                'settings)' % (where, field)]
    text = str(value)
    problems = []
    if any(char in text for char in '\r\n\0'):
        problems.append('%s: the value has a line break or NUL byte' % where)
    name = key.split('/')[-1] if isinstance(key, str) else ''
    if line == '16':
        for ref in sorted(set(_SETTING_REF.findall(text))):
            example = ('%s/<item> = yes' % ref) if ref in ('mail_plugins', 'protocols') else '$SET:%s' % ref
            problems.append('%s: $%s is Dovecot 2.3 syntax; Dovecot 2.4 (DMS 16) does not expand it (mail_plugins = '
                            '$mail_plugins quota makes mail processes fail with "Plugin \'$mail_plugins\' not found"). '
                            'Dovecot 2.4 writes %s' % (where, ref, example))
        if key not in STRFTIME_SETTINGS:
            shorts = sorted(set(m for m in _SHORT_VAR.findall(text) if m))
            for short in shorts:
                new = SHORT_VARIABLES.get(short[-1])
                problems.append('%s: %%%s is a Dovecot 2.3 short variable; Dovecot 2.4 (DMS 16) leaves it '
                                'unexpanded (a path with it is created literally)%s'
                                % (where, short, '; write %s' % new if new and len(short) == 1 else
                                   '; write the %{...} form from Dovecot\'s upgrade notes'))
        if name.endswith('_file') and text.startswith('<'):
            problems.append('%s: Dovecot 2.4 takes the file\'s path here, without the leading <' % where)
    else:
        if _PIPE_VAR.search(text):
            problems.append('%s: %%{... | ...} filters are Dovecot 2.4 syntax; Dovecot 2.3 (DMS 15) writes %%u, '
                            '%%n, %%d' % where)
    return problems


def problems(settings, line, field='dms_dovecot_conf'):
    """Every problem of a flat settings mapping for ``line``, names first; [] when all can be written."""
    line = _line(line)
    if settings is None:
        return []
    if not isinstance(settings, dict):
        return ['%s: expected a mapping of Dovecot setting names to values' % field]
    out = []
    for key in sorted(settings, key=str):
        problem = name_problem(key, line, field)
        if problem:
            out.append(problem)
        out.extend(value_problems(key, settings[key], line, field))
    return out
