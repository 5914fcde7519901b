#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_sieve
short_description: Manage docker-mailserver Sieve filters, out-of-office replies and forwards
version_added: "0.1.0"
description:
  - Keeps the Sieve scripts of docker-mailserver (DMS) in the desired state by writing them where DMS reads them in
    its config volume, C(<login>.dovecot.sieve) for a user's script and C(before.dovecot.sieve) /
    C(after.dovecot.sieve) for the global scripts that run before / after every user's script.
  - Writes Sieve text given in O(script), or generates it from O(vacation) (an out-of-office reply, RFC 5230) and
    O(forward) (a redirect, RFC 5228) for users who do not write Sieve.
  - Every script that changes is compiled with C(sievec) (Debian's C(dovecot-sieve)) on a scratch copy first, with
    the Sieve extensions DMS enables; a script that does not compile is refused with C(sievec)'s message and
    nothing is written. See O(validate) for hosts without C(sievec).
  - "A user's script applies live: DMS copies C(<login>.dovecot.sieve) into the account's home only when its change
    detector rebuilds the accounts, which a change of C(postfix-accounts.cf) triggers, not a change of the script.
    So whenever a user's script changes, the module also rewrites one comment line of C(postfix-accounts.cf)
    (C(# dms_sieve <digest>: ...)); DMS skips comment lines, so the accounts stay as they are, and the detector
    copies the scripts within seconds, without a restart (RV(applies_live))."
  - Global scripts are read only when a container is created; a change of one returns RV(restart_required), and
    the container must be recreated (a restart is not enough).
author:
  - dms.mailserver maintainers (@dms-mailserver)
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  address:
    description:
      - The account whose script this is; the file is C(<address>.dovecot.sieve), spelled as the login is in
        C(postfix-accounts.cf). Validated as M(dms.mailserver.dms_account) validates addresses (no C(/), so no
        path outside the config dir).
      - Mutually exclusive with O(scope) and O(scripts).
    type: str
  scope:
    description:
      - A global script instead of a user's, V(before) (runs before every user's script) or V(after).
      - Mutually exclusive with O(address) and O(scripts).
    type: str
    choices: [before, after]
  script:
    description:
      - The Sieve text. A final line break is added when missing.
      - Mutually exclusive with O(vacation) and O(forward).
    type: str
  vacation:
    description:
      - Generate an out-of-office reply (RFC 5230 C(vacation)). Only for a user's script (O(address)).
      - Each sender gets at most one reply per O(vacation.days); Dovecot does not reply to mailing lists, automatic
        mail, or mail that does not name one of the account's addresses in C(To)/C(Cc) (give the others in
        O(vacation.addresses)).
    type: dict
    suboptions:
      subject:
        description:
          - The subject of the reply. Without it, Dovecot uses C(Auto:) and the subject of the message. Line breaks
            and control characters are refused (they would inject headers into the reply).
        type: str
      body:
        description: The text of the reply. Required. Line breaks are kept.
        type: str
        required: true
      days:
        description: At most one reply per sender in this many days, 1 to 60 (Dovecot's default limits).
        type: int
        default: 7
      addresses:
        description: The account's other addresses (its aliases), which also count as addressed to it.
        type: list
        elements: str
  forward:
    description:
      - Generate a forward (RFC 5228 C(redirect)) to O(forward.addresses). With O(vacation), the reply is sent and
        the message forwarded. Only for a user's script (O(address)).
    type: dict
    suboptions:
      addresses:
        description: Where to forward. Required. The account itself is refused (a loop).
        type: list
        elements: str
        required: true
      keep:
        description: Also keep a copy in the account's INBOX.
        type: bool
        default: true
  state:
    description:
      - V(present) writes the script.
      - V(absent) for a user's script replaces it with a neutral one (a comment and C(keep;), which files every
        message into the INBOX as no script would), because DMS never deletes the copy in the account's home, and
        deleting C(<login>.dovecot.sieve) would leave the old filter running. A user without a script file is
        left alone.
      - V(absent) for a global script deletes the file and returns RV(restart_required) when it existed.
    type: str
    choices: [present, absent]
    default: present
  scripts:
    description:
      - Many scripts in one call, each with O(address) or O(scope), O(script), O(vacation), O(forward) and O(state)
        (default O(state)). Errors name the item, for example C(scripts[2].vacation.subject).
      - Mutually exclusive with O(address), O(scope), O(script), O(vacation) and O(forward).
    type: list
    elements: dict
    suboptions:
      address:
        description: See O(address).
        type: str
      scope:
        description: See O(scope).
        type: str
        choices: [before, after]
      script:
        description: See O(script).
        type: str
      vacation:
        description: See O(vacation).
        type: dict
      forward:
        description: See O(forward).
        type: dict
      state:
        description: See O(state). Defaults to the module's O(state).
        type: str
        choices: [present, absent]
  exclusive:
    description:
      - With O(scripts), neutralise every user script no item names (as O(state=absent) does) and delete the
        global scripts no item names.
    type: bool
    default: false
  validate:
    description:
      - V(auto) compiles each changed script with C(sievec) when the managed host has it, and otherwise writes it
        uncompiled with a warning (DMS compiles only the global scripts, when a container starts; a user's script
        that does not compile makes Dovecot log an error and deliver to the INBOX).
      - V(always) fails, writing nothing, when C(sievec) is missing (install C(dovecot-sieve)).
      - V(never) writes without compiling.
    type: str
    choices: [auto, always, never]
    default: auto
notes:
  - Per-user scripts need DMS's FILE account provisioner (the default); with LDAP DMS does not copy them.
  - Scripts are written with mode C(0644). DMS copies a user's script into the home as root, keeping the file's
    mode, and Dovecot reads it as the mail user.
  - A ManageSieve client's active script in the home is a link that DMS's copy writes through.
  - The generated Sieve quotes every string (backslash and double quote escaped), so a subject or body cannot end
    the string and add commands.
seealso:
  - name: DMS Sieve documentation
    description: How DMS reads per-user and global Sieve scripts.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/advanced/mail-sieve/
  - name: RFC 5230
    description: Sieve vacation extension.
    link: https://www.rfc-editor.org/rfc/rfc5230
'''

EXAMPLES = r'''
- name: File mailing-list mail of alice into a folder
  dms.mailserver.dms_sieve:
    address: alice@example.com
    script: |
      require ["fileinto", "mailbox"];
      if header :contains "list-id" "dev.lists.example.org" {
        fileinto :create "Lists/dev";
      }

- name: Out of office for bob, at most one reply per sender every 3 days
  dms.mailserver.dms_sieve:
    address: bob@example.com
    vacation:
      subject: Out of office until Monday
      body: |
        I am away until Monday and will answer then.
        For urgent matters write to support@example.com.
      days: 3
      addresses: [b.smith@example.com]

- name: Forward carol's mail to her new address and keep a copy
  dms.mailserver.dms_sieve:
    address: carol@example.com
    forward:
      addresses: [carol@example.org]
      keep: true

- name: Back in the office (the old reply really stops)
  dms.mailserver.dms_sieve:
    address: bob@example.com
    state: absent

- name: A global script run before every user's script (needs the container recreated)
  dms.mailserver.dms_sieve:
    scope: before
    script: |
      require ["fileinto"];
      if header :contains "X-Spam" "Yes" { fileinto "Junk"; stop; }
  register: before_script

- name: Every script in one call; scripts of other users are neutralised
  dms.mailserver.dms_sieve:
    config_dir: /srv/dms/config
    exclusive: true
    scripts:
      - address: alice@example.com
        script: |
          require "fileinto";
          if address :is "from" "boss@example.com" { fileinto "Boss"; }
      - address: bob@example.com
        vacation: {subject: Away, body: Back on Monday., days: 7}
'''

RETURN = r'''
created:
  description: Scripts (addresses, or V(before)/V(after)) that did not exist, or were neutral, and now have a script.
  returned: always
  type: list
  elements: str
  sample: ['alice@example.com']
updated:
  description: Scripts whose text changed.
  returned: always
  type: list
  elements: str
  sample: ['before']
removed:
  description: User scripts replaced by the neutral script, and global scripts deleted.
  returned: always
  type: list
  elements: str
  sample: ['bob@example.com']
restart_required:
  description: A global script changed; DMS reads it only when a container is created, so recreate the container.
  returned: always
  type: bool
applies_live:
  description:
    - A user's script changed and C(postfix-accounts.cf) got the comment that makes DMS's change detector copy it;
      it applies within seconds.
  returned: always
  type: bool
changed_files:
  description: Files, relative to O(config_dir), written or (in check mode) that would be written.
  returned: always
  type: list
  elements: str
  sample: [alice@example.com.dovecot.sieve, postfix-accounts.cf]
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

from ansible_collections.dms.mailserver.plugins.module_utils import _sieve
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module

STATES = ['present', 'absent']
SINGLE = ('address', 'scope', 'script', 'vacation', 'forward')


def main():
    argument_spec = common_argument_spec()
    vacation = dict(type='dict', options=dict(
        subject=dict(type='str'),
        body=dict(type='str', required=True),
        days=dict(type='int', default=7),
        addresses=dict(type='list', elements='str'),
    ))
    forward = dict(type='dict', options=dict(
        addresses=dict(type='list', elements='str', required=True),
        keep=dict(type='bool', default=True),
    ))
    argument_spec.update(
        address=dict(type='str'),
        scope=dict(type='str', choices=list(_sieve.SCOPES)),
        script=dict(type='str'),
        vacation=vacation,
        forward=forward,
        state=dict(type='str', choices=STATES, default='present'),
        scripts=dict(type='list', elements='dict', options=dict(
            address=dict(type='str'),
            scope=dict(type='str', choices=list(_sieve.SCOPES)),
            script=dict(type='str'),
            vacation=dict(type='dict'),
            forward=dict(type='dict'),
            state=dict(type='str', choices=STATES),
        )),
        exclusive=dict(type='bool', default=False),
        validate=dict(type='str', choices=list(_sieve.VALIDATE), default='auto'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('address', 'scope'), ('script', 'vacation'), ('script', 'forward')]
        + [('scripts', name) for name in SINGLE],
        required_one_of=[('address', 'scope', 'scripts')],
        supports_check_mode=True,
    )
    run_module(module, _sieve.normalize, lambda cfg, entries: _sieve.plan(cfg, module.params, entries))


if __name__ == '__main__':
    main()
