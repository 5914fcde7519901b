# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.dms.mailserver.plugins.filter.release import (
    FilterModule, dms_dovecot_problems, dms_release_line,
)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'dms_release_line', 'dms_dovecot_problems'}


def test_release_line():
    assert dms_release_line('ghcr.io/docker-mailserver/docker-mailserver:16.0.1') == {'line': '16', 'error': ''}
    assert dms_release_line('dms-test:local', '15') == {'line': '15', 'error': ''}
    found = dms_release_line('ghcr.io/docker-mailserver/docker-mailserver:edge', '')
    assert found['line'] is None and 'dms_release_line' in found['error']


def test_dovecot_problems():
    assert dms_dovecot_problems({'recipient_delimiter': '+'}, '16') == []
    found = dms_dovecot_problems({'ssl_cert': '</p'}, '16')
    assert len(found) == 1 and 'ssl_server_cert_file' in found[0]
    assert dms_dovecot_problems({'ssl_cert': '</p'}, '15') == []
    assert dms_dovecot_problems({}, '16') == []


def test_dovecot_problems_unknown_line():
    with pytest.raises(AnsibleFilterError):
        dms_dovecot_problems({}, 'edge')
