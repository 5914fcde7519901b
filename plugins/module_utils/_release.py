# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""DMS release lines: which one an image belongs to.

The collection supports two lines that differ in ways automation must know about: DMS 15.1 (Debian 12, Postfix 3.7,
Dovecot 2.3) and DMS 16 (Debian 13, Postfix 3.10, Dovecot 2.4).
"""

from __future__ import annotations

import re

LINES = ('15', '16')
DOVECOT = {'15': '2.3', '16': '2.4'}

_TAG_MAJOR = re.compile(r'^v?([0-9]+)(?:$|[.-])')


def image_tag(image):
    """The tag of an image reference ('' without one): after the last ':' that follows the last '/'."""
    image = str(image or '').split('@', 1)[0]
    name = image.rsplit('/', 1)[-1]
    return name.rsplit(':', 1)[1] if ':' in name else ''


def release_line(image, line=''):
    """``(line, error)``: the DMS line of ``image``, or of ``line`` when that is given; ``error`` is '' when known.

    A tag whose first number is 15 or 16 (``15.1.0``, ``v16.0.1``, ``16``) names its line; other tags (``edge``,
    ``local``, a digest) need ``line``; majors below 15 are not supported.
    """
    line = '' if line is None else str(line).strip()
    if line:
        if line not in LINES:
            return None, 'dms_release_line: %r is not a supported DMS release line (use %s)' % (
                line, ' or '.join(LINES))
        return line, ''
    tag = image_tag(image)
    match = _TAG_MAJOR.match(tag)
    if not match:
        return None, ('dms_release_line: the DMS release line cannot be read from the tag %r of dms_image %r; '
                      'set dms_release_line to %s' % (tag, str(image), ' or '.join(LINES)))
    major = int(match.group(1))
    if str(major) in LINES:
        return str(major), ''
    if major < int(LINES[0]):
        return None, ('dms_image: DMS %d (tag %r) is not supported; this collection supports DMS %s' % (
            major, tag, ' and '.join(LINES)))
    return None, ('dms_release_line: DMS %d (tag %r of dms_image) is newer than the lines this collection knows; '
                  'set dms_release_line to the line it behaves like (%s)' % (major, tag, ' or '.join(LINES)))
