#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_alias
short_description: Manage docker-mailserver virtual and regexp aliases, with catch-alls that never swallow accounts
version_added: "0.1.0"
description:
  - Keeps mail aliases of docker-mailserver (DMS) in the desired state by editing the files of its config volume
    directly, in DMS's own formats, the way DMS's C(setup alias) commands do.
  - C(postfix-virtual.cf) holds C(alias recipient[,recipient...]) lines, where the alias is C(user@domain) or the
    catch-all C(@domain) (O(type=virtual)). C(postfix-regexp.cf) holds C(/pattern/flags recipient...) lines that
    Postfix tries in file order, the first match winning (O(type=regexp)).
  - DMS's change detector applies alias changes within seconds; no restart is needed.
  - B(Catch-all safety.) In Postfix a catch-all C(@example.com) also takes the mail of the real accounts of
    C(example.com), and a regexp alias takes the mail of every account it matches. Every such account that is not
    an alias itself gets a self-alias C(user@example.com user@example.com), so it keeps receiving its own mail.
    This module and M(dms.mailserver.dms_account) keep these lines in step with the accounts and aliases (see the
    notes).
  - Works on one alias (O(alias)) or many in one call (O(aliases)).
author:
  - dms.mailserver maintainers (@dms-mailserver)
requirements:
  - On the managed host, Python 3.9 or newer. Nothing else; Postfix itself runs inside the DMS container.
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  alias:
    description:
      - With O(type=virtual), the alias address C(user@domain) or the catch-all C(@domain). Lower-cased (with a
        warning when it had upper-case letters).
      - With O(type=regexp), a Postfix PCRE pattern C(/pattern/flags), kept exactly as given. Postfix matches it
        case-insensitively unless the C(i) flag is given. Any non-alphanumeric character other than C(\),
        C(#) and C(!) may serve as delimiter; the flags are Postfix's C(i m s x A E U X). The pattern must compile
        with Python's C(re) module (the syntax it shares with PCRE, plus PCRE's C((?<name>...)) groups).
      - Mutually exclusive with O(aliases).
    type: str
    aliases: [name]
  type:
    description:
      - V(virtual) for C(postfix-virtual.cf), V(regexp) for C(postfix-regexp.cf). V(virtual) when not set.
      - With O(aliases), the default for items that do not set their own.
      - With O(aliases) and O(exclusive=true), setting it also puts that file under O(exclusive).
    type: str
    choices: [virtual, regexp]
  recipients:
    description:
      - The addresses mail for the alias goes to, accounts of this server or external addresses. Lower-cased.
      - With O(state=present) and O(append=false) the alias ends up with exactly these recipients, in this order.
        An alias that already has the same recipients (compared case-insensitively) is left as it is written.
      - With O(append=true) only the recipients it does not have yet are added, each as C(,recipient) at the end
        of its line, as C(setup alias add) does.
      - With O(state=absent) and O(append=true) only these recipients are removed, each with one neighbouring
        comma, as C(setup alias del) does; the line goes when no recipient is left.
      - Recipients of regexp aliases may use the pattern's groups as C($1), C(${1}) or C($(1)).
    type: list
    elements: str
  append:
    description:
      - Add (O(state=present)) or remove (O(state=absent)) just the O(recipients) given instead of setting the
        whole alias.
    type: bool
    default: false
  before:
    description:
      - Regexp aliases only. Keep this alias before the regexp alias given here (a C(/pattern/flags) key that is
        in C(postfix-regexp.cf)). A new alias goes directly before it; an existing one is moved only when it is
        not before it already.
      - Without O(before) and O(after), a new regexp alias goes after the previous regexp alias of O(aliases) (or
        before the next one that is already in the file), else at the end of the file. Aliases already in the
        file keep their place unless the order of O(aliases) says otherwise.
      - Mutually exclusive with O(after).
    type: str
  after:
    description:
      - Regexp aliases only. Keep this alias after the regexp alias given here, like O(before).
    type: str
  state:
    description:
      - V(present) creates or updates the alias; V(absent) removes it (or, with O(append=true), some of its
        recipients).
    type: str
    choices: [present, absent]
    default: present
  aliases:
    description:
      - Many aliases in one call, applied in order. Each item takes O(alias), O(type), O(recipients), O(append),
        O(before), O(after) and O(state); O(type), O(append) and O(state) default to the module's options.
      - The order of the regexp aliases in the list is the order they get in C(postfix-regexp.cf) (see O(before)).
      - Mutually exclusive with O(alias).
    type: list
    elements: dict
    suboptions:
      alias:
        description: See O(alias).
        type: str
        required: true
        aliases: [name]
      type:
        description: See O(type). Defaults to the module's O(type).
        type: str
        choices: [virtual, regexp]
      recipients:
        description: See O(recipients).
        type: list
        elements: str
      append:
        description: See O(append). Defaults to the module's O(append).
        type: bool
      before:
        description: See O(before).
        type: str
      after:
        description: See O(after).
        type: str
      state:
        description: See O(state). Defaults to the module's O(state).
        type: str
        choices: [present, absent]
  exclusive:
    description:
      - With O(aliases), remove every alias that the list does not name as present, in the files of the types the
        list uses (each item's type, and O(type) when set). A list of only virtual aliases leaves
        C(postfix-regexp.cf) alone, and the other way round.
      - Local-only aliases without C(@) (which this module cannot manage) are kept, and so are the self-aliases
        that catch-all safety still needs.
    type: bool
    default: false
  allow_account_overlap:
    description:
      - Allow a virtual alias whose address is also an account in C(postfix-accounts.cf) (exact, case-insensitive
        match). Such an alias takes the account's mail, so it is refused by default, as DMS refuses it; DMS's own
        check is a prefix match with false positives, this one is exact.
      - An account's self-alias (the address as its only recipient) is always allowed.
    type: bool
    default: false
notes:
  - Catch-all safety works like this. After its edits the module finds every account that a catch-all C(@domain)
    of its domain or a regexp alias matches and that has no line of its own in C(postfix-virtual.cf), and adds
    C(user@domain user@domain) for it (just before the catch-all line). Postfix expands the address to itself and
    delivers to the mailbox. M(dms.mailserver.dms_account) does the same when it creates accounts and removes an
    account's self-alias with the account. Accounts added with DMS's C(setup email add) are covered by the next run
    of either module.
  - When a run removes the catch-all or regexp alias that made self-aliases necessary, those self-aliases are
    removed too (RV(self_aliases_removed)). A self-alias that is still needed is kept even when listed with
    O(state=absent) or left out under O(exclusive), with a warning.
  - A regexp alias that matches an account therefore does not take that account's mail. To forward an account's
    mail, give the account a virtual alias with O(allow_account_overlap=true), for example
    C(user@example.com -> user@example.com, copy@example.org).
  - Which accounts a regexp alias matches is decided with Python's C(re). A line of C(postfix-regexp.cf) in
    PCRE-only syntax cannot be evaluated; the module warns about it, and accounts only that line matches get no
    self-alias.
  - Postfix looks up an address in the alias tables in this order, which the module relies on; C(user@domain) in
    C(postfix-virtual.cf), then the first matching line of C(postfix-regexp.cf), then C(@domain) in
    C(postfix-virtual.cf). Line order in C(postfix-virtual.cf) does not matter for Postfix.
  - Uppercase in an existing file's keys is matched case-insensitively and left as it is unless the line is
    rewritten.
seealso:
  - module: dms.mailserver.dms_account
  - name: DMS account management
    description: Aliases and regexp aliases in DMS's config volume, and the catch-all known issue.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/account-management/overview/
'''

EXAMPLES = r'''
- name: Forward an alias to an external address
  dms.mailserver.dms_alias:
    alias: info@example.com
    recipients:
      - alice@example.com
      - alice.private@example.org

- name: Catch-all for a domain; its real accounts keep receiving their own mail
  dms.mailserver.dms_alias:
    alias: "@example.com"
    recipients: [postmaster@example.com]

- name: Add a recipient to an alias, as "setup alias add" does
  dms.mailserver.dms_alias:
    alias: team@example.com
    recipients: [carol@example.com]
    append: true

- name: Remove one recipient, as "setup alias del" does (the alias goes with its last recipient)
  dms.mailserver.dms_alias:
    alias: team@example.com
    recipients: [carol@example.com]
    append: true
    state: absent

- name: Regexp aliases; the specific rule is kept before the broad one
  dms.mailserver.dms_alias:
    aliases:
      - alias: '/^test[0-9]+@example\.com$/'
        type: regexp
        recipients: [qa@example.com]
      - alias: '/^(.+)@old-name\.example$/'
        type: regexp
        recipients: ['${1}@example.com']

- name: The complete alias list of postfix-virtual.cf, removing every alias not listed
  dms.mailserver.dms_alias:
    config_dir: /srv/dms/config
    aliases:
      - alias: postmaster@example.com
        recipients: [alice@example.com]
      - alias: abuse@example.com
        recipients: [alice@example.com]
    exclusive: true
'''

RETURN = r'''
created:
  description: Aliases created (keys as written, C(user@domain), C(@domain) or C(/pattern/flags)).
  returned: always
  type: list
  elements: str
  sample: [info@example.com, "@example.com"]
updated:
  description: Existing aliases whose recipients changed, or regexp aliases moved to keep the requested order.
  returned: always
  type: list
  elements: str
removed:
  description: Aliases removed.
  returned: always
  type: list
  elements: str
self_aliases_added:
  description: Accounts given a self-alias so that a catch-all or regexp alias does not take their mail.
  returned: always
  type: list
  elements: str
  sample: [alice@example.com]
self_aliases_removed:
  description: Accounts whose self-alias was removed because no catch-all or regexp alias needs it any more.
  returned: always
  type: list
  elements: str
changed_files:
  description: Files, relative to O(config_dir), written or (in check mode) that would be written.
  returned: always
  type: list
  elements: str
  sample: [postfix-virtual.cf]
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

from ansible_collections.dms.mailserver.plugins.module_utils import _aliases
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module

STATES = ['present', 'absent']
TYPES = list(_aliases.TYPES)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        alias=dict(type='str', aliases=['name']),
        type=dict(type='str', choices=TYPES),
        recipients=dict(type='list', elements='str'),
        append=dict(type='bool', default=False),
        before=dict(type='str'),
        after=dict(type='str'),
        state=dict(type='str', choices=STATES, default='present'),
        aliases=dict(type='list', elements='dict', options=dict(
            alias=dict(type='str', required=True, aliases=['name']),
            type=dict(type='str', choices=TYPES),
            recipients=dict(type='list', elements='str'),
            append=dict(type='bool'),
            before=dict(type='str'),
            after=dict(type='str'),
            state=dict(type='str', choices=STATES),
        )),
        exclusive=dict(type='bool', default=False),
        allow_account_overlap=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('alias', 'aliases'), ('before', 'after')],
        required_one_of=[('alias', 'aliases')],
        supports_check_mode=True,
    )
    run_module(module, _aliases.normalize, lambda cfg, entries: _aliases.plan(cfg, module.params, entries))


if __name__ == '__main__':
    main()
