# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""Input validators shared by all dms.mailserver modules.

Every validator takes the value and the *field* it came from (for example
``accounts[3].address``) and raises :class:`ValidationError` whose message
names the field, quotes the offending value and says what is wrong with it.
Validators return the normalised value (addresses and domains lower-cased).
"""

from __future__ import annotations

import re

# Local parts: the RFC 5322 "atext" set, minus what breaks DMS's file formats
# (``|`` and ``:`` are column separators, ``,`` separates alias recipients),
# path separators (the local part becomes a maildir path), ``%`` (Dovecot
# variable expansion) and quoting characters.
_LOCAL_RE = re.compile(r"^[a-z0-9!#$&'*+=?^_`{}~.-]+$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_QUOTA_RE = re.compile(r"^(0|[0-9]+[BkMGT])$")
_SELECTOR_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
# A shortcut for bulk calls: whatever this matches (with at most 254 characters) is an address that
# :func:`address` accepts and returns unchanged (lower case, no trailing dot); everything else takes the full
# checks, which also say what is wrong.  A property test holds the two to each other.
_PLAIN_ADDRESS_RE = re.compile(
    r"(?!#)(?!\.)(?!.*\.\.)[a-z0-9!#$&'*+=?^_`{}~.-]{1,64}(?<!\.)@"
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*(?![0-9]+\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class ValidationError(ValueError):
    """Bad input. The message names the field and the problem."""


def _show(value) -> str:
    """Quote a value for an error message without echoing control bytes."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + '...'
    return text


def _fail(field: str, value, problem: str):
    raise ValidationError('%s: %s %s' % (field, _show(value), problem))


def check_text(value, field: str, allow_empty: bool = False, max_len: int = 512) -> str:
    """Reject what no DMS table line can carry: line breaks and control bytes."""
    if not isinstance(value, str):
        _fail(field, value, 'must be a string')
    if not value and not allow_empty:
        _fail(field, value, 'must not be empty')
    if len(value) > max_len:
        _fail(field, value, 'is longer than %d characters' % max_len)
    for ch in value:
        if ch in '\r\n':
            _fail(field, value, 'contains a line break')
        if ord(ch) < 0x20 or ord(ch) == 0x7f:
            _fail(field, value, 'contains a control character (0x%02x)' % ord(ch))
    return value


def _ascii_only(value: str, field: str, what: str):
    for ch in value:
        if ord(ch) > 0x7e:
            _fail(field, value,
                  'contains the non-ASCII character %r: write %s in ASCII '
                  '(international domains in their IDNA "xn--" form)' % (ch, what))


def domain(value, field: str) -> str:
    """A DNS domain name: labels of letters, digits and hyphens. Lower-cased."""
    check_text(value, field, max_len=253)
    _ascii_only(value, field, 'the domain')
    name = value.lower()
    if name.endswith('.'):
        name = name[:-1]
    if not name:
        _fail(field, value, 'is not a valid domain name: it is empty')
    if any(ch.isspace() for ch in name):
        _fail(field, value, 'is not a valid domain name: it contains white space')
    for label in name.split('.'):
        if not label:
            _fail(field, value, 'is not a valid domain name: it has an empty label (two dots in a row, '
                                'or a leading dot)')
        if not _LABEL_RE.match(label):
            _fail(field, value, 'is not a valid domain name: the label %r may only contain letters, digits '
                                'and inner hyphens, at most 63 characters' % label)
    if name.split('.')[-1].isdigit():
        _fail(field, value, 'is not a valid domain name: the last label is numeric (an IP address is not '
                            'a mail domain)')
    return name


def address(value, field: str) -> str:
    """A mail address ``local@domain`` as DMS's files can hold it. Lower-cased."""
    if isinstance(value, str) and len(value) <= 254 and _PLAIN_ADDRESS_RE.fullmatch(value):
        return value
    check_text(value, field, max_len=254)
    _ascii_only(value, field, 'the address')
    if any(ch.isspace() for ch in value):
        _fail(field, value, 'is not a valid address: it contains white space')
    for sep, why in (('|', 'the column separator of postfix-accounts.cf'),
                     (':', 'the column separator of dovecot-quotas.cf and of Dovecot\'s userdb'),
                     (',', 'the recipient separator of postfix-virtual.cf')):
        if sep in value:
            _fail(field, value, 'is not a valid address: it contains %r, %s' % (sep, why))
    if value.count('@') != 1:
        _fail(field, value, 'is not a valid address: it must contain exactly one "@" (user@example.com)')
    local, dom = value.lower().split('@')
    if not local:
        _fail(field, value, 'is not a valid address: the part before "@" is empty')
    if len(local) > 64:
        _fail(field, value, 'is not a valid address: the part before "@" is longer than 64 characters')
    if not _LOCAL_RE.match(local):
        bad = sorted(set(ch for ch in local if not _LOCAL_RE.match(ch)))
        _fail(field, value, 'is not a valid address: the part before "@" contains %s'
              % ', '.join(repr(c) for c in bad))
    if local.startswith('.') or local.endswith('.') or '..' in local:
        _fail(field, value, 'is not a valid address: dots may not lead, trail or repeat in the part before "@"')
    if local.startswith('#'):
        _fail(field, value, 'is not a valid address: it begins with "#", and a line of DMS\'s files that begins '
                            'with "#" is a comment')
    return '%s@%s' % (local, domain(dom, field + ' (domain part)'))


def catchall_or_address(value, field: str) -> str:
    """``user@domain`` or the catch-all form ``@domain``."""
    check_text(value, field, max_len=254)
    if isinstance(value, str) and value.startswith('@'):
        return '@' + domain(value[1:], field + ' (catch-all domain)')
    return address(value, field)


def quota(value, field: str) -> str:
    """DMS's quota rule, exactly: ``0`` or digits followed by one of B k M G T."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    check_text(value, field, max_len=32)
    if not _QUOTA_RE.match(value):
        _fail(field, value, 'is not a valid quota: use 0 (unlimited) or a whole number followed by '
                            'B (bytes), k (KiB), M (MiB), G (GiB) or T (TiB), e.g. 512M; '
                            'units are case-sensitive')
    return value


def port(value, field: str) -> int:
    """A TCP port, 1 to 65535."""
    if isinstance(value, bool):
        _fail(field, value, 'is not a valid port: expected a number from 1 to 65535')
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        _fail(field, value, 'is not a valid port: expected a number from 1 to 65535')
    return value


_IPV4_RE = re.compile(r'^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$')


def host(value, field: str) -> str:
    """A host name, an IPv4 address or an IPv6 address (without brackets)."""
    check_text(value, field, max_len=253)
    if value.startswith('[') and value.endswith(']'):
        _fail(field, value, 'must be given without brackets: the module adds them')
    if ':' in value:
        import ipaddress
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            _fail(field, value, 'is not a valid host: it contains ":" but is not an IPv6 address '
                                '(give the port in the port option)')
    if _IPV4_RE.match(value):
        return value
    return domain(value, field)


def selector(value, field: str) -> str:
    """A DKIM selector: one or more DNS labels (letters, digits, hyphens, underscores)."""
    check_text(value, field, max_len=63)
    _ascii_only(value, field, 'the selector')
    if value != value.strip() or any(ch.isspace() for ch in value):
        _fail(field, value, 'is not a valid DKIM selector: it contains white space')
    name = value.lower()
    for label in name.split('.'):
        if not label:
            _fail(field, value, 'is not a valid DKIM selector: it has an empty label (leading, trailing or '
                                'repeated dot)')
        if not _SELECTOR_LABEL_RE.match(label):
            _fail(field, value, 'is not a valid DKIM selector: the label %r may only contain letters, digits, '
                                'hyphens and underscores' % label)
    return name
