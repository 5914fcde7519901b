#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_dovecot_master
short_description: Manage docker-mailserver's Dovecot master users
version_added: "0.2.0"
description:
  - Keeps the Dovecot master users of docker-mailserver (DMS) in the desired state by editing
    C(dovecot-masters.cf) in its config volume, in the format DMS's C(setup dovecot-master) commands write
    (C(name|{SCHEME}hash), one master per line).
  - A master user logs in to B(any) mailbox over IMAP or POP3 with its own password, giving the login name
    C(<user@domain>*<master>), for example C(alice@example.com*admin). C(*) is the separator DMS configures
    (C(auth_master_user_separator) in its C(auth-master.inc)); it is returned as RV(login_separator).
  - DMS turns the file into Dovecot's C(/etc/dovecot/masterdb) when the container starts and whenever its change
    detector sees the file change, enables the master login the first time it sees the file, and reloads Dovecot.
    Adding, changing and removing masters therefore applies within seconds, without a restart;
    RV(restart_required) is always V(false).
  - Passwords are handled exactly as M(dms.mailserver.dms_account) handles them, by one shared implementation.
    A given password is B(verified) against the stored hash and the hash is kept when it matches, so a second
    run is not a change.
  - Works on one master (O(name)) or many in one call (O(masters)).
author:
  - dms.mailserver maintainers (@dms-mailserver)
requirements:
  - As M(dms.mailserver.dms_account), on the managed host, Python 3.9 or newer with C(passlib) 1.7.4 or
    C(libpass) for V(SHA512-CRYPT); C(bcrypt) for V(BLF-CRYPT); C(argon2-cffi) for V(ARGON2ID).
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  name:
    description:
      - The master user's name, the part after C(*) in a master login. Lower-cased with a warning when it has
        upper-case letters, as DMS does.
      - DMS itself only refuses an empty name. Refused here as well, because they would break DMS's files or the
        login, are names with white space, C(|), C(:), C(*), a leading C(#), control or non-ASCII characters.
      - A name that is an account in C(postfix-accounts.cf) is refused.
      - Mutually exclusive with O(masters).
    type: str
  password:
    description:
      - The master's password. Hashed with O(scheme) when the master is created or the password changed.
      - Mutually exclusive with O(password_hash).
    type: str
  password_hash:
    description:
      - A ready-made Dovecot hash C({SCHEME}...), for example from C(doveadm pw). Written as it is.
    type: str
  scheme:
    description:
      - The hash scheme for new hashes. V(SHA512-CRYPT) is what DMS writes.
      - Same rules as O(dms.mailserver.dms_account#module:scheme) of M(dms.mailserver.dms_account).
    type: str
    choices: [SHA512-CRYPT, BLF-CRYPT, ARGON2ID]
  update_password:
    description:
      - V(always) verifies O(password) against the stored hash and writes a new hash only when it does not match,
        or replaces the hash when O(password_hash) differs.
      - V(on_create) sets the password only when the master is created and never touches an existing hash.
    type: str
    choices: [always, on_create]
    default: always
  state:
    description:
      - V(present) creates or updates the master; V(absent) removes it (like C(setup dovecot-master del)).
    type: str
    choices: [present, absent]
    default: present
  masters:
    description:
      - Many masters in one call. Each item takes O(name), O(password), O(password_hash), O(scheme) and O(state)
        (default O(state)).
      - Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description: See O(name).
        type: str
        required: true
      password:
        description: See O(password).
        type: str
      password_hash:
        description: See O(password_hash).
        type: str
      scheme:
        description: See O(scheme).
        type: str
        choices: [SHA512-CRYPT, BLF-CRYPT, ARGON2ID]
      state:
        description: See O(state). Defaults to the module's O(state).
        type: str
        choices: [present, absent]
  exclusive:
    description:
      - With O(masters), remove every master of C(dovecot-masters.cf) that the list does not name.
      - An empty list with O(exclusive=true) removes every master. The file is then kept, empty of masters,
        because DMS's change detector does not act on a file that disappears; a deleted file would leave the old
        masters able to log in.
    type: bool
    default: false
notes:
  - Once DMS has seen a C(dovecot-masters.cf), the master login stays enabled in the container (with no masters
    left, no master login succeeds).
  - Master logins need an existing user (C(result_success = continue) in DMS's master passdb).
seealso:
  - module: dms.mailserver.dms_account
  - name: DMS Dovecot master accounts
    description: How DMS configures Dovecot master accounts.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/account-management/overview/
'''

EXAMPLES = r'''
- name: A master user (log in as alice@example.com*admin with this password)
  dms.mailserver.dms_dovecot_master:
    name: admin
    password: "{{ vault_dovecot_master_password }}"

- name: Exactly these masters, removing any other
  dms.mailserver.dms_dovecot_master:
    config_dir: /srv/dms/config
    masters:
      - name: admin
        password: "{{ vault_admin_master_password }}"
      - name: backup
        password_hash: "{SHA512-CRYPT}$6$..."
    exclusive: true

- name: Remove a master
  dms.mailserver.dms_dovecot_master:
    name: backup
    state: absent
'''

RETURN = r'''
created:
  description: Names of masters created.
  returned: always
  type: list
  elements: str
  sample: [admin]
updated:
  description: Names of existing masters whose hash changed (or whose duplicate lines were merged).
  returned: always
  type: list
  elements: str
removed:
  description: Names of masters removed.
  returned: always
  type: list
  elements: str
login_separator:
  description: The separator of master logins DMS configures, C(<user@domain><separator><master>).
  returned: always
  type: str
  sample: '*'
restart_required:
  description: Always V(false); DMS's change detector applies C(dovecot-masters.cf) while the container runs.
  returned: always
  type: bool
changed_files:
  description: Files, relative to O(config_dir), written or (in check mode) that would be written.
  returned: always
  type: list
  elements: str
  sample: [dovecot-masters.cf]
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

from ansible_collections.dms.mailserver.plugins.module_utils import _masters
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import SCHEMES

STATES = ['present', 'absent']


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        name=dict(type='str'),
        password=dict(type='str', no_log=True),
        password_hash=dict(type='str', no_log=True),
        scheme=dict(type='str', choices=list(SCHEMES)),
        update_password=dict(type='str', choices=['always', 'on_create'], default='always', no_log=False),
        state=dict(type='str', choices=STATES, default='present'),
        masters=dict(type='list', elements='dict', options=dict(
            name=dict(type='str', required=True),
            password=dict(type='str', no_log=True),
            password_hash=dict(type='str', no_log=True),
            scheme=dict(type='str', choices=list(SCHEMES)),
            state=dict(type='str', choices=STATES),
        )),
        exclusive=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('name', 'masters'), ('password', 'password_hash')],
        required_one_of=[('name', 'masters')],
        supports_check_mode=True,
    )
    run_module(module, _masters.normalize, lambda cfg, entries: _masters.plan(cfg, module.params, entries))


if __name__ == '__main__':
    main()
