#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_relay
short_description: Manage docker-mailserver relay hosts per sender domain, their credentials and opt-outs
version_added: "0.1.0"
description:
  - Keeps the sender-dependent relay hosts of docker-mailserver (DMS), their SMTP credentials and relay opt-outs in
    the desired state by editing C(postfix-relaymap.cf) and C(postfix-sasl-password.cf) in DMS's config volume
    directly, in the formats DMS's C(setup relay) commands write.
  - C(postfix-relaymap.cf) holds C(@domain [host]:port) (mail from senders of C(domain) goes through that relay)
    and opt-outs C(@domain) (mail from C(domain) does not go through the C(RELAY_HOST) default relay).
  - C(postfix-sasl-password.cf) holds C(@domain username:password), or C([host]:port username:password) for
    credentials that belong to a relay host rather than a sender domain. It is always written with mode C(0600).
  - DMS's change detector turns both files into Postfix's C(sender_dependent_relayhost_maps) and
    C(smtp_sasl_password_maps) within seconds; no restart is needed.
  - Works on one item (O(domain), or O(host) for relay-host credentials) or many in one call (O(relays)).
  - Parts of an item that are not given are left as they are, so each C(setup relay) command has a one-item
    equivalent that changes exactly what the command changes (see the examples).
author:
  - dms.mailserver maintainers (@dms-mailserver)
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  domain:
    description:
      - The sender domain, written as the key C(@domain) in both files (a leading C(@) is accepted). Lower-cased.
      - Without O(domain), an item sets the credentials for the relay host O(host):O(port), key C([host]:port),
        for the relay given by C(DEFAULT_RELAY_HOST) or C(RELAY_HOST)/C(RELAY_PORT) in the container's
        environment. Such an item needs O(username) and O(password) and writes only C(postfix-sasl-password.cf).
      - An item with O(domain) alone asks for nothing and fails, naming what it expected, except in O(relays)
        with O(exclusive=true), where it keeps the domain's lines as they are.
      - Mutually exclusive with O(relays).
    type: str
  host:
    description:
      - The relay host for mail from O(domain)'s senders, a host name, an IPv4 address or an IPv6 address, given
        without brackets and without port. The module writes it as C([host]:port); the brackets make Postfix
        connect to that host itself instead of looking up its MX records, as C(setup relay add-domain) does.
      - The empty string removes O(domain)'s line from C(postfix-relaymap.cf) (a relay or an opt-out) and leaves
        its credentials alone.
      - When omitted (and O(exclude) is not given), O(domain)'s relay line is left as it is.
      - For an item without O(domain), the relay host whose credentials O(username) and O(password) are.
    type: str
  port:
    description:
      - The relay host's port, 1 to 65535. Only with O(host).
      - Defaults to V(25) when O(host) is given, as C(setup relay add-domain) does. Relay services usually want
        V(587) (STARTTLS) or V(2587)/V(2525).
    type: raw
  username:
    description:
      - The SMTP AUTH username for the relay, written with O(password) as C(username:password).
      - Must not contain C(:) (it separates the username from the password), line breaks or control characters,
        and must not begin or end with white space.
      - The empty string removes O(domain)'s credentials and leaves its relay line alone.
      - When omitted, O(domain)'s credentials are left as they are.
    type: str
  password:
    description:
      - The SMTP AUTH password. Needs O(username). Stored in plain text in C(postfix-sasl-password.cf) (mode
        C(0600)), because Postfix has to send it; never shown in output or diffs.
      - Must not contain line breaks or control characters and must not begin or end with a space.
    type: str
  exclude:
    description:
      - V(true) writes the opt-out line for O(domain), C(@domain) followed by one space, exactly as
        C(setup relay exclude-domain) writes it (so the CLI still finds and replaces it); a relay line for the
        domain is replaced by it. An existing opt-out written without the trailing space is accepted as it is.
      - V(false) removes an opt-out line of O(domain) (a relay line stays).
      - An opt-out only matters when the container has C(RELAY_HOST) set; DMS then relays every domain it serves
        through C(RELAY_HOST) except the opted-out ones.
      - Contradicts O(host) and O(username); when omitted, nothing is opted in or out.
    type: bool
  state:
    description:
      - V(present) writes what the item gives; V(absent) removes every line of the item's key from both files
        (C(@domain) relay or opt-out line and credentials, or the C([host]:port) credentials).
    type: str
    choices: [present, absent]
    default: present
  relays:
    description:
      - Many items in one call. Each takes O(domain), O(host), O(port), O(username), O(password), O(exclude) and
        O(state) (default O(state)). Errors name the item, for example C(relays[2].port).
      - Mutually exclusive with O(domain), O(host), O(port), O(username), O(password) and O(exclude).
    type: list
    elements: dict
    suboptions:
      domain:
        description: See O(domain).
        type: str
      host:
        description: See O(host).
        type: str
      port:
        description: See O(port).
        type: raw
      username:
        description: See O(username).
        type: str
      password:
        description: See O(password).
        type: str
      exclude:
        description: See O(exclude).
        type: bool
      state:
        description: See O(state). Defaults to the module's O(state).
        type: str
        choices: [present, absent]
  exclusive:
    description:
      - With O(relays), remove every line of both files whose key no item names, including lines written by hand
        or by C(setup relay) and keys this module does not write (such as full sender addresses).
      - Parts an item does not give are still left as they are.
    type: bool
    default: false
notes:
  - Keys are matched case-insensitively, as Postfix does; a key's spelling in the file is kept when its line is
    rewritten. Duplicate lines of a key are reduced to one when the key is changed.
  - C(RELAY_HOST), C(DEFAULT_RELAY_HOST), C(RELAY_PORT), C(RELAY_USER) and C(RELAY_PASSWORD) are environment
    variables of the container, not files; set them with the C(dms.mailserver.mailserver) role. Credentials for
    the default relay can live in C(postfix-sasl-password.cf) instead of C(RELAY_PASSWORD) with an item without
    O(domain); its key must equal C(DEFAULT_RELAY_HOST) (write it as C([host]:port)) or C([RELAY_HOST]:RELAY_PORT).
  - A relay host's IPv6 address is written in its short lower-case form, C([2001:db8::25]:587).
seealso:
  - name: DMS relay hosts
    description: How DMS configures relay hosts, their credentials and opt-outs.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/advanced/mail-forwarding/relay-hosts/
'''

EXAMPLES = r'''
- name: Relay mail from example.com through Mailgun with its own credentials
  dms.mailserver.dms_relay:
    domain: example.com
    host: smtp.mailgun.org
    port: 587
    username: postmaster@mg.example.com
    password: "{{ vault_mailgun_password }}"

- name: Equivalent of "setup relay add-domain example.org smtp.sendgrid.net 2525" (credentials untouched)
  dms.mailserver.dms_relay:
    domain: example.org
    host: smtp.sendgrid.net
    port: 2525

- name: Equivalent of "setup relay add-auth example.org apikey <password>" (relay line untouched)
  dms.mailserver.dms_relay:
    domain: example.org
    username: apikey
    password: "{{ vault_sendgrid_api_key }}"

- name: Equivalent of "setup relay exclude-domain internal.example.net" (only with RELAY_HOST)
  dms.mailserver.dms_relay:
    domain: internal.example.net
    exclude: true

- name: Credentials for the default relay (DEFAULT_RELAY_HOST=[email-smtp.eu-west-1.amazonaws.com]:587), AWS SES
  dms.mailserver.dms_relay:
    host: email-smtp.eu-west-1.amazonaws.com
    port: 587
    username: "{{ vault_ses_smtp_user }}"
    password: "{{ vault_ses_smtp_password }}"

- name: The whole relay configuration in one call; everything else is removed
  dms.mailserver.dms_relay:
    config_dir: /srv/dms/config
    exclusive: true
    relays:
      - domain: example.com
        host: smtp.mailgun.org
        port: 587
        username: postmaster@mg.example.com
        password: "{{ vault_mailgun_password }}"
      - domain: example.org
        host: email-smtp.eu-west-1.amazonaws.com
        port: 587
        username: "{{ vault_ses_smtp_user }}"
        password: "{{ vault_ses_smtp_password }}"
      - domain: internal.example.net
        exclude: true

- name: Stop relaying example.org's mail through its own relay and drop its credentials
  dms.mailserver.dms_relay:
    domain: example.org
    state: absent
'''

RETURN = r'''
created:
  description: Keys (C(@domain) or C([host]:port)) that had no line in either file and now have one.
  returned: always
  type: list
  elements: str
  sample: ['@example.com']
updated:
  description: Keys that had a line and whose relay, opt-out or credentials line changed.
  returned: always
  type: list
  elements: str
  sample: ['@example.org']
removed:
  description: Keys whose lines were removed from both files (O(state=absent) or O(exclusive)).
  returned: always
  type: list
  elements: str
  sample: ['[email-smtp.eu-west-1.amazonaws.com]:587']
changed_files:
  description:
    - Files, relative to O(config_dir), written or (in check mode) that would be written. Includes
      C(postfix-sasl-password.cf) when only its mode is corrected to C(0600).
  returned: always
  type: list
  elements: str
  sample: [postfix-relaymap.cf, postfix-sasl-password.cf]
config_dir:
  description: The config dir worked on.
  returned: always
  type: str
backup_files:
  description: Backup copies made when O(backup=true).
  returned: when O(backup=true)
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dms.mailserver.plugins.module_utils import _relay
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module

STATES = ['present', 'absent']
SINGLE = ('domain', 'host', 'port', 'username', 'password', 'exclude')


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        domain=dict(type='str'),
        host=dict(type='str'),
        port=dict(type='raw'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        exclude=dict(type='bool'),
        state=dict(type='str', choices=STATES, default='present'),
        relays=dict(type='list', elements='dict', options=dict(
            domain=dict(type='str'),
            host=dict(type='str'),
            port=dict(type='raw'),
            username=dict(type='str'),
            password=dict(type='str', no_log=True),
            exclude=dict(type='bool'),
            state=dict(type='str', choices=STATES),
        )),
        exclusive=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('relays', name) for name in SINGLE],
        required_one_of=[('domain', 'host', 'relays')],
        supports_check_mode=True,
    )
    run_module(module, _relay.normalize, lambda cfg, entries: _relay.plan(cfg, module.params, entries))


if __name__ == '__main__':
    main()
