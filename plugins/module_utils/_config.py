# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_config``: DMS's config-volume files that are not tables.

What DMS does with each file (read from DMS's start-up scripts and its change detector, for v15.1.0 and v16;
``docs/modules/dms_config.md`` has the table with the sources):

* read once, when a new container sets itself up (a restart skips the setup, so a change needs the container
  recreated): ``postfix-main.cf`` (appended to main.cf, then ``postconf -n``), ``postfix-master.cf`` (each line
  through ``postconf -P``), ``dovecot.cf`` (copied to ``local.conf``), ``user-patches.sh`` (run last with
  ``/bin/bash``), ``fail2ban-jail.cf``, ``fail2ban-fail2ban.cf``, ``spamassassin-rules.cf``, ``amavis.cf``,
  ``whitelist_clients.local``, ``whitelist_recipients``;
* read at start and applied live by the change detector (with ``ENABLE_RSPAMD=1``): ``rspamd/custom-commands.conf``
  and ``rspamd/override.d/*``.

Restriction guard (``postfix-main.cf`` and ``postfix-master.cf``): DMS hooks the send/receive restriction tables
into ``dms_smtpd_sender_restrictions`` (reached from ``smtpd_sender_restrictions`` and
``mua_sender_restrictions``) and ``smtpd_recipient_restrictions`` at start, *before* it applies
``postfix-main.cf``, whose value then wins.  A value for one of these keys is refused unless it keeps the hook.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import tempfile

from ansible_collections.dms.mailserver.plugins.module_utils import _confformats as fmt
from ansible_collections.dms.mailserver.plugins.module_utils import _dovecot
from ansible_collections.dms.mailserver.plugins.module_utils import _ucl
from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._release import DOVECOT

CONTAINER_CONFIG_DIR = '/tmp/docker-mailserver'
SEND_ACCESS_HOOK = 'check_sender_access texthash:%s/postfix-send-access.cf' % CONTAINER_CONFIG_DIR
RECEIVE_ACCESS_HOOK = 'check_recipient_access texthash:%s/postfix-receive-access.cf' % CONTAINER_CONFIG_DIR

START, LIVE = 'start', 'change_detector'

# file -> (kind, when DMS applies it, default mode, what reads it in the container)
FILES = {
    'postfix-main.cf': ('postfix_main', START, 0o644),
    'postfix-master.cf': ('postfix_master', START, 0o644),
    'dovecot.cf': ('dovecot', START, 0o644),
    'user-patches.sh': ('content', START, 0o755),
    'fail2ban-jail.cf': ('content', START, 0o644),
    'fail2ban-fail2ban.cf': ('content', START, 0o644),
    'spamassassin-rules.cf': ('content', START, 0o644),
    'amavis.cf': ('content', START, 0o644),
    'whitelist_clients.local': ('content', START, 0o644),
    'whitelist_recipients': ('content', START, 0o644),
    'rspamd/custom-commands.conf': ('content', LIVE, 0o644),
}
OVERRIDE_DIR = 'rspamd/override.d/'
OVERRIDE_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*\.(conf|inc)$')
DKIM_SIGNING = 'rspamd/override.d/dkim_signing.conf'

# The services of DMS's master.cf (the same at v15.1.0 and v16) plus those DMS appends at start before it applies
# postfix-master.cf (policyd-spf with ENABLE_POLICYD_SPF=1, Amavis's two with ENABLE_AMAVIS=1; both default on).
DMS_SERVICES = (
    'smtp/inet', 'smtpd/pass', 'tlsproxy/unix', 'dnsblog/unix', 'submission/inet', 'submissions/inet', 'pickup/fifo',
    'sender-cleanup/unix', 'cleanup/unix', 'qmgr/unix', 'tlsmgr/unix', 'rewrite/unix', 'bounce/unix',
    'defer/unix', 'trace/unix', 'verify/unix', 'flush/unix', 'proxymap/unix', 'proxywrite/unix', 'smtp/unix',
    'relay/unix', 'showq/unix', 'error/unix', 'retry/unix', 'discard/unix', 'local/unix', 'virtual/unix',
    'lmtp/unix', 'anvil/unix', 'scache/unix', 'postlog/unix-dgram',
    'policyd-spf/unix', 'smtp-amavis/unix', '127.0.0.1:10025/inet',
)
# Custom parameters of DMS's main.cf: postconf does not know them, DMS's main.cf defines and references them.
DMS_PARAMETERS = frozenset(('dms_smtpd_sender_restrictions', 'mua_sender_restrictions', 'dkim_milter',
                            'dmarc_milter', 'rspamd_milter', 'policyd-spf_time_limit'))

# The policy services DMS puts into smtpd_recipient_restrictions when their feature is on.
DMS_RECIPIENT_POLICIES = (
    ('check_policy_service unix:private/policyd-spf', 'ENABLE_POLICYD_SPF=1 (default)'),
    ('check_policy_service inet:localhost:65265', 'Dovecot quotas, ENABLE_QUOTAS=1 (default)'),
    ('check_policy_service inet:127.0.0.1:10023', 'Postgrey, ENABLE_POSTGREY=1'),
)

SECRET_KEY = re.compile(r'password|secret|token', re.I)
CUSTOM_COMMANDS = {
    'disable-module': 1, 'enable-module': 1, 'set-option-for-module': 3, 'set-option-for-controller': 2,
    'set-option-for-proxy': 2, 'set-common-option': 2, 'add-line': 2,
}
LINE_ALIASES = {'15': '15', '15.1': '15', '16': '16'}

# Section types besides doveconf's top-level sections: filters and named list filters of each line.
DOVECOT_SECTION_EXTRA = {
    '15': frozenset(('protocol', 'local', 'remote', 'local_name', 'plugin', 'dict', 'mailbox')),
    '16': frozenset(('protocol', 'local', 'remote', 'local_name', 'sieve_script', 'mailbox', 'quota', 'fts',
                     'language', 'mail_attribute', 'mail_ext_attachment', 'dict_server', 'event_exporter',
                     'metric', 'ssl_server', 'ssl_client')),
}


# Section types that need a name: "service imap-login", "protocol imap"; Dovecot 2.4 also names passdb, userdb
# and sieve_script sections.
DOVECOT_NAMED_SECTIONS = {
    '15': frozenset(('service', 'protocol', 'local', 'remote', 'namespace')),
    '16': frozenset(('service', 'protocol', 'local', 'remote', 'namespace', 'passdb', 'userdb', 'sieve_script')),
}
DOVECOT_NAMED_EXAMPLES = {'service': 'service imap-login', 'protocol': 'protocol imap', 'local': 'local 10.0.0.0/8',
                          'remote': 'remote 192.0.2.0/24', 'namespace': 'namespace inbox',
                          'passdb': 'passdb passwd-file', 'userdb': 'userdb passwd-file',
                          'sieve_script': 'sieve_script personal'}


def _fail(field, problem):
    raise v.ValidationError('%s: %s' % (field, problem))


# -- the file ------------------------------------------------------------------------------


def file_info(name):
    """(relpath, kind, when, default mode) of a ``file`` option, or ValidationError."""
    if not isinstance(name, str) or not name:
        _fail('file', 'is required: one of %s, or rspamd/override.d/<name>.conf' % ', '.join(sorted(FILES)))
    fmt.check_chars(name, 'file', 'the file name')
    if name in FILES:
        kind, when, mode = FILES[name]
        return name, kind, when, mode
    if name.startswith(OVERRIDE_DIR):
        base = name[len(OVERRIDE_DIR):]
        if '/' in base or '\\' in base or base in ('.', '..') or not OVERRIDE_NAME.match(base) or '..' in base:
            _fail('file', '%r: an Rspamd override is rspamd/override.d/<name>.conf (or .inc), where <name> is '
                          'letters, digits, ".", "-" and "_", not starting with "."; no "/" and no ".."' % name)
        return name, 'rspamd_override', LIVE, 0o644
    _fail('file', '%r is not a DMS config-volume file this module manages; use one of %s, or '
                  'rspamd/override.d/<name>.conf (tables have their own modules)' % (name, ', '.join(sorted(FILES))))
    return None


def release_line(value):
    if value is None:
        return None
    text = str(value).strip()
    if text not in LINE_ALIASES:
        _fail('release_line', '%r is not a DMS release line (use 15.1 or 16)' % (value,))
    return LINE_ALIASES[text]


def parse_mode(value, default):
    if value is None:
        return default, False
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.match(r'^0?[0-7]{3,4}$', value):
        mode = int(value, 8)
    else:
        _fail('mode', '%r is not an octal file mode; write it quoted, for example "0600"' % (value,))
    if not 0 <= mode <= 0o777:
        # An unquoted 600 in YAML is the number 600 (0o1130): refuse it rather than write a strange mode.
        _fail('mode', '%r is not a file mode of at most 0777; write it quoted, for example "0600"' % (value,))
    return mode, True


# -- normalizing the options ------------------------------------------------------------------


def normalize(params):
    """Validate the options; returns (request, warnings)."""
    warnings = []
    relpath, kind, when, default_mode = file_info(params.get('file'))
    mode, mode_given = parse_mode(params.get('mode'), default_mode)
    state = params.get('state') or 'present'
    given = [name for name in ('settings', 'services', 'sections', 'content') if params.get(name) is not None]
    allowed = {
        'postfix_main': ('settings',), 'postfix_master': ('services',), 'dovecot': ('settings', 'sections'),
        'content': ('content',), 'rspamd_override': ('content',),
    }[kind]
    for name in given:
        if name not in allowed:
            _fail(name, 'has no meaning for %s; it takes %s' % (relpath, ' or '.join(allowed)))
    if state == 'present' and not given:
        _fail(allowed[0], 'is required with state=present for %s' % relpath)
    if state == 'absent' and params.get('content') is not None:
        _fail('content', 'has no meaning with state=absent (the whole file is removed)')
    if params.get('exclusive') and kind in ('content', 'rspamd_override'):
        _fail('exclusive', 'has no meaning for %s, whose whole content is given' % relpath)
    line = release_line(params.get('release_line'))
    if kind == 'dovecot' and state == 'present' and line is None:
        _fail('release_line', 'is required for dovecot.cf: Dovecot 2.3 (DMS 15.1) and 2.4 (DMS 16) take different '
                              'settings and section syntax')
    if relpath == DKIM_SIGNING and not params.get('force'):
        _fail('file', '%s is managed by dms.mailserver.dms_dkim (its domain { } entries); give force=true to '
                      'manage the whole file here' % relpath)

    request = dict(relpath=relpath, kind=kind, when=when, mode=mode, mode_given=mode_given, state=state,
                   line=line, exclusive=bool(params.get('exclusive')), force=bool(params.get('force')),
                   no_log_content=bool(params.get('no_log_content')), settings=None, services=None,
                   sections=None, content=None)

    if params.get('settings') is not None:
        request['settings'] = _normalize_settings(params['settings'], kind, state, line, request['force'],
                                                  warnings)
    if params.get('services') is not None:
        request['services'] = _normalize_services(params['services'], state, request['force'], warnings)
    if params.get('sections') is not None:
        request['sections'] = _normalize_sections(params['sections'], state, line)
    if params.get('content') is not None:
        request['content'] = _normalize_content(params['content'], relpath, kind)
    return request, warnings


def _mapping(value, field):
    if not isinstance(value, dict):
        _fail(field, 'must be a mapping')
    return value


def _normalize_settings(settings, kind, state, line, force, warnings):
    _mapping(settings, 'settings')
    out = []
    for key, value in settings.items():
        field = 'settings.%s' % key
        if not isinstance(key, str) or not key:
            _fail('settings', 'a key must be a non-empty string')
        fmt.check_chars(key, field, 'the key')
        if state == 'absent' or value is None:
            rendered = None
        elif kind == 'postfix_main':
            rendered = fmt.render_postfix(value, field)
        else:
            if isinstance(value, bool):
                value = 'yes' if value else 'no'
            rendered = fmt.render_dovecot(value, field)
        if kind == 'postfix_main':
            if not fmt.POSTFIX_NAME.match(key):
                _fail(field, 'not a Postfix parameter name (letters, digits, "_", "." and "-"; no white space or "=")')
            if rendered is not None:
                _guard_main(key, rendered, field, force, warnings)
        elif rendered is not None:
            # Removing a key needs no name check: a name the line does not know is removed all the same.
            problem = _dovecot.name_problem(key, line, 'settings')
            if problem:
                raise v.ValidationError(problem)
            if rendered is not None:
                problems = _dovecot.value_problems(key, rendered.strip('"'), line, 'settings')
                if problems:
                    raise v.ValidationError(problems[0])
        out.append((key, rendered, field))
    return out


def _has(value, *needles):
    words = value.replace(',', ' ').split()
    joined = ' '.join(words)
    return any(' '.join(needle.split()) in joined for needle in needles)


_SENDER_REFS = ('$dms_smtpd_sender_restrictions', '${dms_smtpd_sender_restrictions}',
                '$(dms_smtpd_sender_restrictions)')


def guard_problem(key, value):
    """Why setting ``key`` to ``value`` drops a hook of DMS's restriction tables (None when it keeps it)."""
    if key == 'smtpd_recipient_restrictions':
        if not _has(value, RECEIVE_ACCESS_HOOK):
            return ('DMS puts "%s" (the receive restrictions of dms_account, restrict: [receive]) and its policy '
                    'services into smtpd_recipient_restrictions at start, and postfix-main.cf is applied after '
                    'that, so this value would drop them; keep "%s" in the value'
                    % (RECEIVE_ACCESS_HOOK, RECEIVE_ACCESS_HOOK))
    elif key in ('smtpd_sender_restrictions', 'mua_sender_restrictions'):
        if not _has(value, SEND_ACCESS_HOOK, *_SENDER_REFS):
            return ('DMS hooks "%s" (the send restrictions of dms_account, restrict: [send]) into '
                    'dms_smtpd_sender_restrictions, which %s reaches only through $dms_smtpd_sender_restrictions; '
                    'keep $dms_smtpd_sender_restrictions in the value' % (SEND_ACCESS_HOOK, key))
    elif key == 'dms_smtpd_sender_restrictions':
        if not _has(value, SEND_ACCESS_HOOK):
            return ('DMS puts "%s" (the send restrictions of dms_account, restrict: [send]) into this key at start, '
                    'and postfix-main.cf is applied after that, so this value would drop it; keep "%s" in the value'
                    % (SEND_ACCESS_HOOK, SEND_ACCESS_HOOK))
    return None


GUARDED_KEYS = ('smtpd_recipient_restrictions', 'smtpd_sender_restrictions', 'dms_smtpd_sender_restrictions',
                'mua_sender_restrictions')


def _guard_main(key, value, field, force, warnings):
    problem = guard_problem(key, value)
    if problem:
        if not force:
            _fail(field, 'refused: %s (force=true writes it anyway)' % problem)
        warnings.append('%s: written with force=true although %s' % (field, problem))
    if key == 'smtpd_recipient_restrictions':
        missing = [why for hook, why in DMS_RECIPIENT_POLICIES if not _has(value, hook)]
        if missing:
            warnings.append('%s: this value replaces the policy services DMS adds to smtpd_recipient_restrictions '
                            'when their feature is on (%s); add them to the value if you use those features'
                            % (field, '; '.join(missing)))


def _normalize_services(services, state, force, warnings):
    _mapping(services, 'services')
    out = []
    for key, value in services.items():
        field = 'services.%s' % key
        if not isinstance(key, str):
            _fail('services', 'a key must be a string service/type/parameter')
        fmt.check_chars(key, field, 'the key')
        match = fmt.MASTER_KEY.match(key)
        if not match:
            _fail(field, 'not a service/type/parameter key as DMS hands it to postconf -P (for example '
                         'smtp/inet/postscreen_upstream_proxy_protocol): the service starts with a lower-case letter '
                         'or digit, the type is inet, unix, unix-dgram, fifo or pass, and no part may contain white '
                         'space, "/" or "="')
        service = '%s/%s' % (match.group(1), match.group(2))
        if service not in DMS_SERVICES:
            if not force:
                _fail(field, 'DMS\'s master.cf has no service %s, so postconf -P would only warn and change nothing '
                             '(DMS has %s); force=true writes it anyway (for a service user-patches.sh adds)'
                      % (service, ', '.join(DMS_SERVICES)))
            warnings.append('%s: DMS\'s master.cf has no service %s; written with force=true' % (field, service))
        rendered = None if state == 'absent' or value is None else fmt.render_master(value, field)
        parameter = match.group(3)
        if rendered is not None and parameter in ('smtpd_sender_restrictions', 'smtpd_recipient_restrictions'):
            ok = (_has(rendered, SEND_ACCESS_HOOK, '$mua_sender_restrictions', '$smtpd_sender_restrictions',
                       *_SENDER_REFS) if parameter == 'smtpd_sender_restrictions'
                  else _has(rendered, RECEIVE_ACCESS_HOOK, '$smtpd_recipient_restrictions'))
            if not ok:
                problem = ('this overrides %s for the %s service and drops the hook of DMS\'s restriction tables '
                           '(dms_account restrict); keep $%s (or $mua_sender_restrictions) in the value'
                           % (parameter, service, parameter if parameter == 'smtpd_recipient_restrictions'
                              else 'dms_smtpd_sender_restrictions'))
                if not force:
                    _fail(field, 'refused: %s (force=true writes it anyway)' % problem)
                warnings.append('%s: written with force=true although %s' % (field, problem))
        out.append((key, rendered, field))
    return out


def _normalize_sections(sections, state, line):
    _mapping(sections, 'sections')
    out = []
    known = set()
    if line is not None:
        from ansible_collections.dms.mailserver.plugins.module_utils import _dovecot_settings as ds
        known = set(ds.SECTIONS[line]) | DOVECOT_SECTION_EXTRA[line]
        if line == '16':
            known |= set(_dovecot.SETTINGS[line])  # 2.4 writes list settings as blocks: mail_plugins { quota = yes }
    for header, body in sections.items():
        field = 'sections.%s' % header
        if not isinstance(header, str):
            _fail('sections', 'a section header must be a string such as "service imap-login"')
        name = fmt.section_name(header, field)
        section_type = name.split(' ', 1)[0]
        if line is not None and section_type not in known:
            if line == '16' and section_type == 'plugin':
                _fail(field, 'Dovecot 2.4 (DMS 16) has no plugin section; plugin settings are top-level settings')
            _fail(field, '%s is not a section type of Dovecot %s (DMS %s)' % (section_type, DOVECOT[line],
                                                                              '15.1' if line == '15' else '16'))
        if state == 'absent' or body is None:
            out.append((name, None, field))
            continue
        if line is not None and ' ' not in name and section_type in DOVECOT_NAMED_SECTIONS[line]:
            _fail(field, 'a %s section needs a name in Dovecot %s (for example "%s"); %s'
                  % (section_type, DOVECOT[line], DOVECOT_NAMED_EXAMPLES.get(section_type, section_type + ' <name>'),
                     'Dovecot 2.4 stops with "%s { } is missing section name"' % section_type if line == '16'
                     else 'Dovecot cannot tell which one is meant'))
        lines = fmt.render_section(name, body, field)
        if line is not None:
            _section_values(body, field, line)
        out.append((name, lines, field))
    return out


def _section_values(body, field, line):
    for key, value in body.items():
        where = '%s.%s' % (field, key)
        if isinstance(value, dict):
            _section_values(value, where, line)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            problems = _dovecot.value_problems(key.split(':')[0], value, line, field)
            if problems:
                raise v.ValidationError(problems[0])


def _normalize_content(content, relpath, kind):
    if not isinstance(content, str):
        _fail('content', 'must be a string (the whole file)')
    for number, text in enumerate(content.split('\n'), 1):
        try:
            fmt.check_chars(text.replace('\t', ' '), 'content', 'line %d' % number)
        except v.ValidationError as exc:
            if '\r' in text and text.endswith('\r'):
                raise v.ValidationError('content: line %d ends with a carriage return (CRLF); write LF line ends'
                                        % number)
            raise exc
    if content and not content.endswith('\n'):
        content += '\n'
    if kind == 'rspamd_override':
        try:
            _ucl.check(content)
        except _ucl.UclError as exc:
            _fail('content', 'is not valid Rspamd UCL (%s); Rspamd would not load %s' % (exc, relpath))
    elif relpath == 'rspamd/custom-commands.conf':
        _check_custom_commands(content)
    elif relpath.startswith('fail2ban-'):
        parser = configparser.ConfigParser(interpolation=None, strict=True)
        try:
            parser.read_string(content)
        except configparser.Error as exc:
            _fail('content', 'is not an INI file Fail2ban can read: %s' % str(exc).replace('\n', ' '))
    return content


def _check_custom_commands(content):
    lines = custom_commands(content)
    for number, command, args in lines:
        where = 'content: line %d' % number
        if command not in CUSTOM_COMMANDS:
            raise v.ValidationError('%s: %r is not a command of DMS\'s custom-commands.conf (%s)'
                                    % (where, command, ', '.join(sorted(CUSTOM_COMMANDS))))
        given = len([arg for arg in args if arg])
        if given < CUSTOM_COMMANDS[command]:
            raise v.ValidationError('%s: %s takes %d argument(s)%s' % (
                where, command, CUSTOM_COMMANDS[command],
                '; without them DMS\'s script stops (its start-up fails, or its change detector exits)'
                if command.startswith('set-') or command.endswith('-module') else ''))
        if command in ('disable-module', 'enable-module', 'set-option-for-module', 'add-line'):
            target = args[0]
            if '/' in target or target.startswith('.'):
                raise v.ValidationError('%s: %r names a file in /etc/rspamd/override.d/; it must not contain "/" or '
                                        'start with "."' % (where, target))
        if command.startswith('set-'):
            option, value = (args[1], args[2]) if command == 'set-option-for-module' else (args[0], _joined(args))
            if not CUSTOM_OPTION.match(option):
                raise v.ValidationError('%s: option %r: DMS uses the option name as a regular expression (grep -E, '
                                        'sed -E); use letters, digits, "_" and "-" only' % (where, option))
            bad = sorted(set(value) & set('|&\\'))
            if bad:
                raise v.ValidationError('%s: the value contains %s, which DMS\'s sed command takes as syntax when '
                                        'the option is already set: the file would not get the value as written'
                                        % (where, ' '.join(repr(char) for char in bad)))
    # What a new container makes of the commands must be UCL Rspamd can read.
    files = simulate_custom_commands({}, lines, live=False)
    for name in sorted(files):
        if not name.endswith(('.conf', '.inc')):
            continue
        try:
            _ucl.check(files[name])
        except _ucl.UclError as exc:
            raise v.ValidationError('content: the commands write /etc/rspamd/override.d/%s, and the result is not '
                                    'valid Rspamd UCL (%s); Rspamd would not load it' % (name, exc))


# -- Rspamd: what DMS makes of custom-commands.conf and override.d --------------------------------
#
# DMS (helpers/rspamd.sh: _rspamd_handle_user_modules_adjustments, the same at v15.1.0 and v16) reads each valid
# line (not blank, not starting with "#") of custom-commands.conf as "command arg1 arg2 arg3", the last taking the
# rest of the line, and changes the files of /etc/rspamd/override.d in place. At the first start it runs them after
# copying the volume's override.d; its change detector runs them again whenever the file changes, on top of what
# override.d holds then, and empties override.d and copies the volume's files whenever one of those changes or is
# added (check-for-changes.sh: _rspamd_changes). It does not notice a removed file (it looks for lines of the new
# checksum list only), and its change detector cannot run enable-module and disable-module (the function they call
# is defined only in the start-up scripts). So a change applies live exactly only when the live result equals what
# a new container would make: restart_required says when it does not.

CUSTOM_OPTION = re.compile(r'^[A-Za-z0-9_-]+$')


def custom_commands(text):
    """[(line number, command, [arg1, arg2, arg3])] as DMS reads them (bash ``read -r`` with the default IFS)."""
    out = []
    for number, line in enumerate((text or '').split('\n'), 1):
        stripped = line.strip(' \t')
        if not stripped or stripped.startswith('#'):
            continue
        words = stripped.split(None, 3)
        words += [''] * (4 - len(words))
        out.append((number, words[0], words[1:]))
    return out


def _joined(args):
    """The value of set-option-for-controller / -proxy and set-common-option: "arg2 arg3" less a trailing blank."""
    value = '%s %s' % (args[1], args[2])
    return value[:-1] if value.endswith(' ') else value


def _set_option(files, name, option, value):
    lines = files.get(name, '').split('\n')
    finder = re.compile(re.escape(option) + r'.*=')
    if any(finder.search(line) for line in lines):
        cutter = re.compile(r'([ \t]*' + re.escape(option) + r').*')
        files[name] = '\n'.join(cutter.sub(lambda m: '%s = %s;' % (m.group(1), value), line, count=1)
                                for line in lines)
    else:
        files[name] = files.get(name, '') + '%s = %s;\n' % (option, value)


def simulate_custom_commands(files, lines, live):
    """Apply parsed commands to ``files`` ({name: text} of /etc/rspamd/override.d) as DMS's start-up
    (``live=False``) or its change detector (``live=True``) does; returns ``files``."""
    for dummy, command, args in lines:
        if command in ('enable-module', 'disable-module'):
            if not live and args[0]:
                files[args[0] + '.conf'] = 'enabled = %s;\n' % ('true' if command == 'enable-module' else 'false')
        elif command == 'set-option-for-module':
            if args[1] and args[2]:
                _set_option(files, args[0] + '.conf', args[1], args[2])
        elif command in ('set-option-for-controller', 'set-option-for-proxy', 'set-common-option'):
            target = {'set-option-for-controller': 'worker-controller.inc',
                      'set-option-for-proxy': 'worker-proxy.inc'}.get(command, 'options.inc')
            if args[0]:
                _set_option(files, target, args[0], _joined(args))
        elif command == 'add-line' and args[0]:
            files[args[0]] = files.get(args[0], '') + '%s %s\n' % (args[1], args[2])
    return files


def _volume_overrides(cfg):
    """{name: text} of the volume's rspamd/override.d/ (what DMS copies into /etc/rspamd/override.d)."""
    out = {}
    directory = os.path.join(cfg.path, OVERRIDE_DIR)
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        if name.startswith('.') or not os.path.isfile(os.path.join(directory, name)):
            continue
        text = cfg.read(OVERRIDE_DIR + name)
        if text is not None:
            out[name] = text
    return out


def rspamd_live_differs(cfg, relpath, before, after):
    """True when DMS's change detector, applying this change to a container that started with ``before``, leaves
    /etc/rspamd/override.d other than a new container would make it with ``after``."""
    overrides = _volume_overrides(cfg)
    if relpath == 'rspamd/custom-commands.conf':
        started = simulate_custom_commands(dict(overrides), custom_commands(before), live=False)
        live = started if after is None else simulate_custom_commands(started, custom_commands(after), live=True)
        fresh = simulate_custom_commands(dict(overrides), custom_commands(after), live=False)
        return live != fresh
    name = relpath[len(OVERRIDE_DIR):]
    commands = custom_commands(cfg.read('rspamd/custom-commands.conf'))
    old, new = dict(overrides), dict(overrides)
    old.pop(name, None)
    new.pop(name, None)
    if before is not None:
        old[name] = before
    if after is not None:
        new[name] = after
    started = simulate_custom_commands(old, commands, live=False)
    # A removed file goes unnoticed; a new or changed one makes DMS empty override.d and copy the volume's files.
    live = started if after is None else dict(new)
    return live != simulate_custom_commands(dict(new), commands, live=False)


# -- masking ------------------------------------------------------------------------------------


_KV_LINE = re.compile(r'^(\s*[^=\s#][^=]*?\s*=\s*)(.*)$')


def mask_text(text, masker):
    """Mask the value of every ``key = value`` / ``service/type/key=value`` line whose key names a secret."""
    if not text:
        return text
    out = []
    for line in text.split('\n'):
        match = _KV_LINE.match(line)
        if match and SECRET_KEY.search(match.group(1)) and match.group(2).strip():
            line = match.group(1) + masker.token(match.group(2), 'secret')
        out.append(line)
    return '\n'.join(out)


def masked_all(text):
    if text is None:
        return ''
    return '<content masked (no_log_content): %d lines>\n' % len(text.splitlines())


def secret_values(params):
    """Values a run must never print: those of secret-looking keys, and the content with no_log_content."""
    out = set()

    def walk(mapping):
        for key, value in (mapping or {}).items():
            if isinstance(value, dict):
                walk(value)
            elif isinstance(key, str) and SECRET_KEY.search(key) and isinstance(value, (str, int, float)) and \
                    not isinstance(value, bool) and str(value):
                out.add(str(value))
    for name in ('settings', 'services', 'sections'):
        if isinstance(params.get(name), dict):
            walk(params[name])
    content = params.get('content')
    if isinstance(content, str):
        # The values of secret-looking keys in a whole-file content (password = "..." in an Rspamd override),
        # bare and without quotes and the trailing ";", so the echoed arguments never show them.
        for line in content.splitlines():
            match = _KV_LINE.match(line)
            if match and SECRET_KEY.search(match.group(1)):
                value = match.group(2).strip()
                for candidate in (value, value.rstrip(';').strip(), value.rstrip(';').strip().strip('"\'')):
                    if len(candidate) >= 4:
                        out.add(candidate)
    if params.get('no_log_content') and isinstance(content, str) and content:
        out.add(params['content'])
        out.update(line for line in params['content'].splitlines() if len(line.strip()) >= 4)
    return out


# -- tool checks on the managed host ------------------------------------------------------------


class Tools:
    """The real programs on the managed host: ``find(name)`` gives a path or None, ``run(args, data)`` gives
    (rc, stdout, stderr)."""

    def __init__(self, find, run):
        self.find = find
        self.run = run


def _scratch():
    return tempfile.mkdtemp(prefix='dms-config-check-')


def check_postfix_main(tools, text, warnings):
    postconf = tools.find('postconf')
    if not postconf:
        warnings.append('postfix-main.cf: postconf is not installed on the managed host, so only the module\'s own '
                        'checks ran (install postfix for postconf\'s)')
        return None
    scratch = _scratch()
    try:
        with open(os.path.join(scratch, 'main.cf'), 'w', encoding='utf-8') as handle:
            handle.write(text)
        with open(os.path.join(scratch, 'master.cf'), 'w', encoding='utf-8') as handle:
            handle.write('')
        rc, dummy, err = tools.run([postconf, '-c', scratch, '-n'])
        if rc != 0:
            raise v.ValidationError('settings: postconf refuses the resulting postfix-main.cf: %s'
                                    % _tool_message(err, scratch))
        rc, defaults, dummy = tools.run([postconf, '-c', scratch, '-d'])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _postconf_defaults(defaults) if rc == 0 else None


def _postconf_defaults(text):
    out = {}
    for line in text.splitlines():
        if ' = ' in line:
            key, value = line.split(' = ', 1)
            out[key.strip()] = value.strip()
        elif line.endswith(' ='):
            out[line[:-2].strip()] = ''
    return out


def _boolean_default(default):
    """True for a Postfix boolean: its default is yes or no, or a compatibility_level choice between them
    (``${{$compatibility_level} <level {1} ? {no} : {yes}}``)."""
    if default is None:
        return False
    return default in ('yes', 'no') or bool(re.search(r'\?\s*\{(yes|no)\}\s*:\s*\{(yes|no)\}\s*\}*$', default))


def check_postfix_values(settings, defaults, warnings):
    """Booleans must be yes or no (Postfix stops at anything else); unknown names are dropped by DMS."""
    if not defaults:
        return
    for key, rendered, field in settings:
        if rendered is None:
            continue
        if key not in defaults and key not in DMS_PARAMETERS and '$' not in rendered:
            warnings.append('%s: the host\'s postconf does not know this parameter; DMS keeps a custom parameter '
                            'only when main.cf or master.cf refers to it (postconf -n drops it otherwise)' % field)
        if _boolean_default(defaults.get(key)) and rendered.lower() not in ('yes', 'no') and '$' not in rendered:
            _fail(field, '%r is not a Postfix boolean: write yes or no (true/false in YAML); Postfix stops with '
                         '"bad boolean configuration" on anything else' % rendered)


def check_postfix_master(tools, entries, warnings):
    postconf = tools.find('postconf')
    if not postconf:
        warnings.append('postfix-master.cf: postconf is not installed on the managed host, so only the module\'s '
                        'own checks ran (install postfix for postconf\'s)')
        return
    scratch = _scratch()
    try:
        with open(os.path.join(scratch, 'main.cf'), 'w', encoding='utf-8') as handle:
            handle.write('')
        with open(os.path.join(scratch, 'master.cf'), 'w', encoding='utf-8') as handle:
            for service in DMS_SERVICES:
                name, kind = service.rsplit('/', 1)
                handle.write('%s %s n - n - - smtpd\n' % (name, kind))
        for key, rendered, field in entries:
            if rendered is None:
                continue
            service = key.rsplit('/', 1)[0]
            if service not in DMS_SERVICES:
                continue  # forced: postconf would only warn about the missing service
            if SECRET_KEY.search(key):
                # postconf -P takes the line on its command line, which every local user can read in /proc.
                warnings.append('%s: not checked with postconf -P, which would show the value on its command line'
                                % field)
                continue
            rc, dummy, err = tools.run([postconf, '-c', scratch, '-P', '%s=%s' % (key, rendered)])
            if rc != 0 or 'warning' in err:
                _fail(field, 'postconf -P refuses it: %s' % _tool_message(err, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _tool_message(err, scratch):
    text = ' '.join(line.strip() for line in (err or '').splitlines() if line.strip())
    return text.replace(scratch + '/', '').replace(scratch, '.') or 'it exits with an error'


def dovecot_version(tools):
    """(doveconf path, "major.minor") of the managed host's Dovecot, from the header doveconf -n prints."""
    doveconf = tools.find('doveconf')
    if not doveconf:
        return None, None
    scratch = _scratch()
    try:
        path = os.path.join(scratch, 'empty.conf')
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write('')
        dummy, out, dummy2 = tools.run([doveconf, '-c', path, '-n'])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    match = re.match(r'^#\s*(\d+\.\d+)', out or '')
    return doveconf, match.group(1) if match else None


def check_dovecot(tools, text, line, warnings):
    doveconf, version = dovecot_version(tools)
    if not doveconf or version != DOVECOT[line]:
        warnings.append('dovecot.cf: checked against the generated setting lists of Dovecot %s (DMS %s) only: '
                        'the managed host %s' % (DOVECOT[line], '15.1' if line == '15' else '16',
                                                 'has no doveconf' if not doveconf else
                                                 'runs Dovecot %s' % (version or 'of an unknown version')))
        return
    scratch = _scratch()
    try:
        path = os.path.join(scratch, 'dovecot.cf')
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(text)
        rc, dummy, err = tools.run([doveconf, '-c', path, '-n'])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if rc != 0:
        message = _tool_message(err, scratch)
        if 'No such file or directory' in message:
            warnings.append('dovecot.cf: doveconf could not open a file the config refers to (%s); it exists only '
                            'in the container, so this part was not checked' % message)
            return
        raise v.ValidationError('dovecot.cf: Dovecot %s\'s doveconf refuses it: %s' % (version, message))


def check_shell(tools, text):
    bash = tools.find('bash')
    if not bash:
        return
    scratch = _scratch()
    try:
        path = os.path.join(scratch, 'user-patches.sh')
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(text)
        rc, dummy, err = tools.run([bash, '-n', path])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if rc != 0:
        _fail('content', 'bash -n finds a syntax error, and DMS runs user-patches.sh with /bin/bash as the last '
                         'step of its setup: %s' % _tool_message(err, scratch))


# -- the plan -----------------------------------------------------------------------------------


def _editor(kind, text):
    if kind == 'postfix_main':
        return fmt.PostfixMain(text)
    if kind == 'postfix_master':
        return fmt.MasterOverrides(text)
    try:
        return fmt.DovecotConf(text)
    except fmt.DovecotError as exc:
        raise v.ValidationError('file: the existing dovecot.cf cannot be read as Dovecot config (%s); fix it or '
                                'remove it, nothing was changed' % exc)


def plan(cfg, request, tools):
    """Stage the file's new content in ``cfg``; returns the result values."""
    from ansible_collections.dms.mailserver.plugins.module_utils._configdir import Masker
    warnings = []
    relpath, kind = request['relpath'], request['kind']
    before = cfg.read(relpath)
    result = dict(file=relpath, applies_live=request['when'] == LIVE, restart_required=False, warnings=warnings)

    if kind in ('content', 'rspamd_override'):
        after = None if request['state'] == 'absent' else request['content']
        if after is not None and relpath == 'user-patches.sh':
            check_shell(tools, after)
    else:
        editor = _editor(kind, before)
        entries = request['settings'] or request['services'] or []
        sections = request['sections'] or []
        for key, rendered, dummy in entries:
            if rendered is None:
                editor.remove(key)
            else:
                editor.set(key, rendered)
        for header, lines, dummy in sections:
            if lines is None:
                editor.remove_section(header)
            else:
                editor.set_section(header, lines)
        if request['exclusive'] and request['state'] == 'present':
            keys = set(key for key, rendered, dummy in entries if rendered is not None)
            headers = set(header for header, lines, dummy in sections if lines is not None)
            if kind == 'dovecot':
                editor.keep_only_both(keys, headers)
            else:
                editor.keep_only(keys)
        if request['state'] == 'absent' and not entries and not sections:
            after = None
        else:
            after = editor.render()
            if editor.changed and not editor.has_content():
                after = None    # a file left with nothing in it is removed
        if after is not None and after != before:
            if kind == 'postfix_main':
                defaults = check_postfix_main(tools, after, warnings)
                check_postfix_values(entries, defaults, warnings)
            elif kind == 'postfix_master':
                check_postfix_master(tools, entries, warnings)
            elif kind == 'dovecot':
                check_dovecot(tools, after, request['line'], warnings)
        if kind == 'postfix_main' and after is not None:
            _warn_missing_tables(cfg, entries, warnings)

    if request['no_log_content']:
        diff_before, diff_after = masked_all(before), masked_all(after)
    else:
        masker = Masker()
        diff_before, diff_after = mask_text(before or '', masker), mask_text(after or '', masker)
    changed = cfg.stage(relpath, after, mode=request['mode'], force_mode=request['mode_given'] or
                        relpath == 'user-patches.sh', diff_before=diff_before, diff_after=diff_after)
    mode_fixes = []
    if after is not None and (request['mode_given'] or relpath == 'user-patches.sh'):
        mode_fixes.append((relpath, request['mode']))
    # Only the content matters to DMS: a mode correction alone needs no new container.
    result['restart_required'] = bool(changed) and request['when'] == START
    if changed and request['when'] == LIVE and after != before and rspamd_live_differs(cfg, relpath, before, after):
        result['restart_required'] = True
    result['_mode_fixes'] = mode_fixes
    result['_warnings'] = warnings
    del result['warnings']
    return result


def _warn_missing_tables(cfg, entries, warnings):
    for key, rendered, field in entries:
        if rendered is None:
            continue
        for hook, table in ((RECEIVE_ACCESS_HOOK, 'postfix-receive-access.cf'),
                            (SEND_ACCESS_HOOK, 'postfix-send-access.cf')):
            if hook in ' '.join(rendered.replace(',', ' ').split()) and cfg.read(table) is None:
                warnings.append('%s: refers to %s, which does not exist in config_dir: Postfix defers mail while a '
                                'texthash table is missing (dms_account creates it with restrict)' % (field, table))


# -- reading (dms_info) ---------------------------------------------------------------------------


def override_files(cfg):
    """The ``rspamd/override.d/`` files of the config dir that this module could manage, sorted."""
    try:
        names = sorted(os.listdir(cfg.abspath(OVERRIDE_DIR)))
    except OSError:
        return []
    return [OVERRIDE_DIR + name for name in names
            if OVERRIDE_NAME.match(name) and os.path.isfile(cfg.abspath(OVERRIDE_DIR + name))]


def read_files(cfg):
    """The non-table files of the config dir that exist, with the keys this module manages in each.

    Names only, never values: ``settings`` for ``postfix-main.cf`` and ``dovecot.cf``, ``services`` for
    ``postfix-master.cf`` (``service/type/parameter``), ``sections`` for ``dovecot.cf`` (their headers).  A
    ``dovecot.cf`` this module cannot read has ``error`` instead.
    """
    out = []
    for relpath in sorted(FILES) + override_files(cfg):
        text = cfg.read(relpath)
        if text is None:
            continue
        kind, when = (FILES[relpath][0], FILES[relpath][1]) if relpath in FILES else ('rspamd_override', LIVE)
        item = dict(file=relpath, kind=kind, applies='change_detector' if when == LIVE else 'container_start')
        if kind == 'postfix_main':
            item['settings'] = fmt.PostfixMain(text).keys()
        elif kind == 'postfix_master':
            item['services'] = fmt.MasterOverrides(text).keys()
        elif kind == 'dovecot':
            try:
                conf = fmt.DovecotConf(text)
                item['settings'], item['sections'] = conf.keys(), conf.sections()
            except fmt.DovecotError as exc:
                item['error'] = 'cannot be read as Dovecot config (%s)' % exc
        out.append(item)
    return out
