#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_account
short_description: Manage docker-mailserver accounts, passwords, quotas and restrictions
version_added: "0.1.0"
description:
  - Keeps mail accounts of docker-mailserver (DMS) in the desired state by editing the files of its config volume
    directly, in DMS's own formats, the way DMS's C(setup email) commands do.
  - C(postfix-accounts.cf) holds C(address|{SCHEME}hash[|dovecot extra fields]),
    C(dovecot-quotas.cf) holds C(address:QUOTA), and C(postfix-send-access.cf) / C(postfix-receive-access.cf)
    hold C(address REJECT) restrictions (the format C(setup email restrict) writes).
  - DMS's change detector applies account and quota changes within seconds; no restart is needed.
    The restriction tables are only read when the container starts, so RV(restart_required) is V(true) when they
    changed.
  - A given password is B(verified) against the stored hash and the hash is kept when it matches, so a second run
    is not a change. Only a real password change writes a new hash.
  - Works on one account (O(address)) or many in one call (O(accounts)); one call hashes and verifies in parallel
    on all CPUs and is much faster than a loop of tasks.
author:
  - dms.mailserver maintainers (@dms-mailserver)
requirements:
  - On the managed host, Python 3.9 or newer with C(passlib) 1.7.4 or its maintained fork C(libpass) for
    V(SHA512-CRYPT); C(bcrypt) (any release from 3.x on) for V(BLF-CRYPT); C(argon2-cffi) for V(ARGON2ID).
    Debian and Ubuntu packages C(python3-passlib), C(python3-bcrypt) and C(python3-argon2) do as well.
    No C(crypt) module is needed, so Python 3.13 works.
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  address:
    description:
      - The account's address C(user@domain). Lower-cased with a warning when it has upper-case letters, as DMS does.
      - Must not contain white space, C(|), C(:), C(,), control characters or line breaks.
      - Mutually exclusive with O(accounts).
    type: str
    aliases: [name]
  password:
    description:
      - The account's password. Hashed with O(scheme) when the account is created or the password changed.
      - Mutually exclusive with O(password_hash).
    type: str
  password_hash:
    description:
      - A ready-made Dovecot hash C({SCHEME}...), for example from C(doveadm pw). Written as it is.
    type: str
  scheme:
    description:
      - The hash scheme for new hashes. V(SHA512-CRYPT) is what DMS writes.
      - When set explicitly and an existing hash uses another scheme, the password is re-hashed with this one.
        When not set, existing hashes of any scheme are kept as long as the password verifies, and a changed
        password is hashed with the scheme of the hash it replaces (V(SHA512-CRYPT) when that is not one of the
        choices).
      - V(BLF-CRYPT) (bcrypt) uses only the first 72 bytes of a password; a longer password (counted in UTF-8) is
        refused for it, with an error naming the field.
      - An error of a hashing library is never taken for a wrong password. The task fails, naming the installed
        library versions, and nothing is written.
    type: str
    choices: [SHA512-CRYPT, BLF-CRYPT, ARGON2ID]
  update_password:
    description:
      - V(always) verifies O(password) against the stored hash and writes a new hash only when it does not match,
        or replaces the hash when O(password_hash) differs.
      - V(on_create) sets the password only when the account is created and never touches an existing hash
        (no verification, the fastest re-run).
    type: str
    choices: [always, on_create]
    default: always
  quota:
    description:
      - The mailbox quota, exactly as DMS accepts it, V(0) (unlimited) or a whole number followed by one of
        C(B), C(k), C(M), C(G), C(T) (case-sensitive), for example V(512M).
      - The empty string removes the account's quota line (DMS's default quota applies).
      - When omitted, an existing quota line is left alone.
    type: str
  restrict:
    description:
      - Which directions to deny the account, V(send) and/or V(receive), like C(setup email restrict add).
      - V([]) lifts both restrictions. When omitted, restrictions are left alone.
    type: list
    elements: str
  state:
    description:
      - V(present) creates or updates the account; V(absent) removes it.
      - Removal deletes the account line, its quota line, its restriction lines and the address from every alias's
        recipient list in C(postfix-virtual.cf) (an alias left without recipients is removed), like
        C(setup email del). Mail data is never touched.
    type: str
    choices: [present, absent]
    default: present
  accounts:
    description:
      - Many accounts in one call. Each item takes the per-account options O(address), O(password),
        O(password_hash), O(scheme), O(quota), O(restrict) and O(state) (default O(state)).
      - Mutually exclusive with O(address).
    type: list
    elements: dict
    suboptions:
      address:
        description: See O(address).
        type: str
        required: true
        aliases: [name]
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
      quota:
        description: See O(quota).
        type: str
      restrict:
        description: See O(restrict).
        type: list
        elements: str
      state:
        description: See O(state). Defaults to the module's O(state).
        type: str
        choices: [present, absent]
  exclusive:
    description:
      - With O(accounts), remove every account of C(postfix-accounts.cf) that the list does not name, with its
        quota, restrictions and alias references.
      - Refused when the list names no account to keep (DMS shuts down without accounts).
    type: bool
    default: false
  allow_alias_overlap:
    description:
      - Allow an account whose address is also an alias key in C(postfix-virtual.cf) (exact, case-insensitive
        match). Refused by default, as DMS refuses it; DMS's own check is a prefix match with false positives,
        this one is exact.
    type: bool
    default: false
notes:
  - When a catch-all alias C(@domain) (or a regexp alias) would capture mail for an account, the module keeps a
    self-alias C(user@domain user@domain) in C(postfix-virtual.cf) so the account still receives its own mail.
    See M(dms.mailserver.dms_alias).
  - Uppercase in an existing file's keys is matched case-insensitively and left as it is unless the line is
    rewritten.
  - DMS finds an account's quota with a substring match; new quota lines are placed so that each account's own
    line is found first, and a warning names any account for which DMS would still pick another's quota.
seealso:
  - module: dms.mailserver.dms_alias
  - name: DMS account management
    description: How DMS manages accounts in its config volume.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/account-management/overview/
'''

EXAMPLES = r'''
- name: Create an account (a second run with the same password changes nothing)
  dms.mailserver.dms_account:
    address: alice@example.com
    password: "{{ vault_alice_password }}"
    quota: 2G

- name: Many accounts in one call, removing any account not listed
  dms.mailserver.dms_account:
    config_dir: /srv/dms/config
    accounts:
      - address: alice@example.com
        password: "{{ vault_alice_password }}"
      - address: bob@example.com
        password_hash: "{SHA512-CRYPT}$6$..."
        restrict: [send]
    exclusive: true

- name: Set a password only when the account is new
  dms.mailserver.dms_account:
    address: carol@example.com
    password: "{{ initial_password }}"
    update_password: on_create

- name: Remove an account, its quota, restrictions and alias references
  dms.mailserver.dms_account:
    address: dave@example.com
    state: absent
'''

RETURN = r'''
created:
  description: Addresses of accounts created.
  returned: always
  type: list
  elements: str
  sample: [alice@example.com]
updated:
  description: Addresses of existing accounts whose hash, quota or restrictions changed.
  returned: always
  type: list
  elements: str
removed:
  description: Addresses of accounts removed.
  returned: always
  type: list
  elements: str
restart_required:
  description:
    - V(true) when C(postfix-send-access.cf) or C(postfix-receive-access.cf) changed; DMS reads them only when the
      container starts. Account and quota changes never need a restart.
  returned: always
  type: bool
changed_files:
  description: Files, relative to O(config_dir), written or (in check mode) that would be written.
  returned: always
  type: list
  elements: str
  sample: [postfix-accounts.cf, dovecot-quotas.cf]
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

from ansible_collections.dms.mailserver.plugins.module_utils import _accounts
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import SCHEMES

STATES = ['present', 'absent']


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        address=dict(type='str', aliases=['name']),
        password=dict(type='str', no_log=True),
        password_hash=dict(type='str', no_log=True),
        scheme=dict(type='str', choices=list(SCHEMES)),
        update_password=dict(type='str', choices=['always', 'on_create'], default='always', no_log=False),
        quota=dict(type='str'),
        restrict=dict(type='list', elements='str'),
        state=dict(type='str', choices=STATES, default='present'),
        accounts=dict(type='list', elements='dict', options=dict(
            address=dict(type='str', required=True, aliases=['name']),
            password=dict(type='str', no_log=True),
            password_hash=dict(type='str', no_log=True),
            scheme=dict(type='str', choices=list(SCHEMES)),
            quota=dict(type='str'),
            restrict=dict(type='list', elements='str'),
            state=dict(type='str', choices=STATES),
        )),
        exclusive=dict(type='bool', default=False),
        allow_alias_overlap=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('address', 'accounts'), ('password', 'password_hash')],
        required_one_of=[('address', 'accounts')],
        supports_check_mode=True,
    )
    # The hashing libraries a run needs are checked (imported and tested against known answers) before the
    # config dir is touched; a missing or broken one fails the task with install guidance (see _hashing.require).
    run_module(module, _accounts.normalize, lambda cfg, entries: _accounts.plan(cfg, module.params, entries))


if __name__ == '__main__':
    main()
