#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_fetchmail
short_description: Manage the remote mailboxes docker-mailserver collects mail from (fetchmail and getmail)
version_added: "0.1.0"
description:
  - Keeps the remote POP3 and IMAP mailboxes that docker-mailserver (DMS) collects into local accounts in the
    desired state, by editing DMS's config volume in the formats its two fetchers read.
  - O(fetcher=fetchmail) (default) writes one C(poll) statement per remote mailbox into C(fetchmail.cf), in the
    syntax of fetchmail's run-control file, each on one line (DMS's C(FETCHMAIL_PARALLEL=1) splits the file at
    every line that contains C(poll)). Comments, C(set) and C(defaults) statements and the polls of other
    mailboxes stay as they are.
  - O(fetcher=getmail) writes one getmail6 rc file per remote mailbox, C(getmail/<username>@<server>.cf), with a
    C([retriever]) section and a C([destination]) that delivers with Dovecot's LDA
    (C(/usr/lib/dovecot/deliver -d <target>)), as DMS documents. Other files of C(getmail/) and
    C(getmail/getmailrc_general.cf) stay as they are.
  - A remote mailbox is identified by O(server) (case-insensitive) and O(username) (exact), whichever fetcher
    holds it; an item whose O(fetcher) changes moves from one file to the other.
  - Every file written holds passwords in plain text, because the fetchers have to send them, and is written with
    mode C(0600) (an existing file with a wider mode is corrected). Diffs show passwords as numbered placeholders.
  - B(DMS reads these files only at the first start of a container) (C(ENABLE_FETCHMAIL=1) /
    C(ENABLE_GETMAIL=1)); its change detector does not watch them. After a change, recreate the container
    (the C(dms.mailserver.mailserver) role does so when the files change), or run C(setup debug fetchmail) in it
    for a one-off test. RV(restart_required) says when that is needed.
author:
  - dms.mailserver maintainers (@dms-mailserver)
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  server:
    description:
      - The remote POP3 or IMAP server, a host name, an IPv4 address or an IPv6 address (without brackets and
        without port). Host names are lower-cased.
      - Mutually exclusive with O(fetches).
    type: str
  protocol:
    description:
      - The protocol spoken with O(server). Defaults to V(imap).
    type: str
    choices: [pop3, imap]
  port:
    description:
      - The server's port, 1 to 65535. When omitted, the fetcher's default for O(protocol) and O(ssl) applies
        (110/995 for POP3, 143/993 for IMAP).
    type: int
  username:
    description:
      - The user name on the remote server. Together with O(server) it identifies the item.
      - Must not contain line breaks or control characters and must not begin or end with white space. Quotes,
        backslashes and other characters are written with the escapes fetchmail reads back (C(\\x27) for a single
        quote, C(\\\\) for a backslash).
    type: str
  password:
    description:
      - The password on the remote server. Stored in plain text in a C(0600) file; never shown in output or diffs.
      - Required to create an item. When omitted for an item that exists, its current password is kept.
      - Same character rules as O(username).
    type: str
  ssl:
    description:
      - Connect with implicit TLS (POP3S, IMAPS). fetchmail checks the server's certificate (fetchmail 6.4's
        default); getmail uses its SSL retrievers.
      - V(false) with fetchmail means STARTTLS, which fetchmail 6.4 then requires (it fails when the server does
        not offer it); with getmail, whose plain retrievers have no STARTTLS, it means no TLS at all and needs
        O(cleartext=true).
      - Defaults to V(true).
    type: bool
  cleartext:
    description:
      - Allow a login without any TLS, password in clear text, with O(ssl=false). fetchmail gets C(sslproto '')
        (without it fetchmail 6.4 insists on STARTTLS); getmail needs it to accept its plain retrievers.
      - Only for a server on a network you trust (the same host, a private link).
      - Defaults to V(false).
    type: bool
  keep:
    description:
      - V(true) leaves the fetched messages on the remote server (C(keep); with IMAP only unseen messages are
        fetched). V(false) deletes them after delivery (C(nokeep)).
      - V(false) is refused with O(fetcher=getmail). DMS puts its own C([options]) section (with C(delete =
        false)) before every getmail file, and getmail refuses a second one. Change the base options in
        C(getmail/getmailrc_general.cf) for that.
      - Defaults to V(true).
    type: bool
  folders:
    description:
      - IMAP folders to fetch from (fetchmail C(folder), getmail C(mailboxes)). Default the inbox. Not with
        O(protocol=pop3).
    type: list
    elements: str
  target:
    description:
      - The local DMS account that receives the mail (fetchmail C(is), getmail C(deliver -d)). It must be an
        account in C(postfix-accounts.cf); the module fails otherwise.
    type: str
  fetcher:
    description:
      - Which of DMS's fetchers collects the mailbox. The container needs C(ENABLE_FETCHMAIL=1) or
        C(ENABLE_GETMAIL=1) respectively.
    type: str
    choices: [fetchmail, getmail]
    default: fetchmail
  state:
    description:
      - V(present) writes the item; V(absent) removes the mailbox (found by O(server) and O(username)) from
        C(fetchmail.cf) and C(getmail/).
    type: str
    choices: [present, absent]
    default: present
  fetches:
    description:
      - Many items in one call, each with the options above (O(fetcher) and O(state) default to the module's).
        Errors name the item, for example C(fetches[2].port).
      - Mutually exclusive with O(server).
    type: list
    elements: dict
    suboptions:
      server:
        description: See O(server).
        type: str
        required: true
      protocol:
        description: See O(protocol).
        type: str
        choices: [pop3, imap]
      port:
        description: See O(port).
        type: int
      username:
        description: See O(username).
        type: str
        required: true
      password:
        description: See O(password).
        type: str
      ssl:
        description: See O(ssl).
        type: bool
      cleartext:
        description: See O(cleartext).
        type: bool
      keep:
        description: See O(keep).
        type: bool
      folders:
        description: See O(folders).
        type: list
        elements: str
      target:
        description: See O(target).
        type: str
      fetcher:
        description: See O(fetcher).
        type: str
        choices: [fetchmail, getmail]
      state:
        description: See O(state).
        type: str
        choices: [present, absent]
  exclusive:
    description:
      - With O(fetches), remove every C(poll) statement of C(fetchmail.cf) and every C(getmail/*.cf) file (except
        C(getmailrc_general.cf)) that no item names, including ones written by hand and getmail files the module
        cannot read. C(set) and C(defaults) statements and comments stay.
    type: bool
    default: false
  validate:
    description:
      - Let C(fetchmail --configdump) read the new C(fetchmail.cf), after DMS's general options, from a private
        scratch copy before writing; if fetchmail refuses it, nothing is written and its message is returned.
      - Only when C(fetchmail) is installed on the managed host (it usually is not; it runs inside the
        container). Without it, and always, the module reads every statement it writes back with its own
        reader of fetchmail's syntax and checks getmail files with getmail's own parser rules.
        RV(validated) lists the files fetchmail checked.
    type: bool
    default: true
notes:
  - DMS delivers fetchmail's mail through Postfix (SMTP to the container itself) and getmail's through Dovecot's
    LDA. fetchmail polls every C(FETCHMAIL_POLL) seconds (default 300), getmail every C(GETMAIL_POLL) minutes
    (default 5).
  - A C(poll) statement written by hand over several lines, or with several C(user) clauses, is rewritten in the
    module's one-line form when an item names it; one with several users, or sharing a line with another
    statement, is refused (split it by hand first).
seealso:
  - name: DMS fetchmail
    description: DMS's documentation of fetchmail.cf.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/advanced/mail-fetchmail/
  - name: DMS getmail
    description: DMS's documentation of getmail.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/advanced/mail-getmail/
  - name: fetchmail's run control file
    description: The syntax of fetchmail.cf.
    link: https://www.fetchmail.info/fetchmail-man.html#the-run-control-file
'''

EXAMPLES = r'''
- name: Collect an old IMAP mailbox into alice's account (kept on the old server)
  dms.mailserver.dms_fetchmail:
    server: imap.old-provider.example
    username: alice.old
    password: "{{ vault_old_imap_password }}"
    target: alice@example.com

- name: Collect a POP3 mailbox on a non-standard port and delete what was fetched
  dms.mailserver.dms_fetchmail:
    server: pop.legacy.example
    protocol: pop3
    port: 1995
    username: bob
    password: "{{ vault_bob_pop_password }}"
    keep: false
    target: bob@example.com

- name: The same through getmail (ENABLE_GETMAIL=1), two folders
  dms.mailserver.dms_fetchmail:
    fetcher: getmail
    server: imap.old-provider.example
    username: carol
    password: "{{ vault_carol_password }}"
    folders: [INBOX, Archive]
    target: carol@example.com

- name: Every remote mailbox in one call; unlisted polls and getmail files are removed
  dms.mailserver.dms_fetchmail:
    config_dir: /srv/dms/config
    exclusive: true
    fetches:
      - server: imap.old-provider.example
        username: alice.old
        password: "{{ vault_old_imap_password }}"
        target: alice@example.com
      - server: pop.legacy.example
        protocol: pop3
        username: bob
        target: bob@example.com   # password omitted: the current one is kept

- name: Stop collecting a mailbox
  dms.mailserver.dms_fetchmail:
    server: pop.legacy.example
    username: bob
    state: absent
'''

RETURN = r'''
created:
  description: Items (C(server/username)) that had no poll statement or getmail file and now have one.
  returned: always
  type: list
  elements: str
  sample: ['imap.old-provider.example/alice.old']
updated:
  description: Items whose statement or file changed (or moved to the other fetcher).
  returned: always
  type: list
  elements: str
removed:
  description: Items removed (O(state=absent) or O(exclusive)); unreadable getmail files removed by O(exclusive)
    are named by their path.
  returned: always
  type: list
  elements: str
changed_files:
  description: Files, relative to O(config_dir), written or (in check mode) that would be written, including files
    whose mode only is corrected to C(0600).
  returned: always
  type: list
  elements: str
  sample: [fetchmail.cf, getmail/carol@imap.old-provider.example.cf]
validated:
  description: Files that C(fetchmail --configdump) read and accepted before they were written (see O(validate)).
  returned: always
  type: list
  elements: str
restart_required:
  description: True when a file changed. DMS reads them only at the first start of a container, so the container
    must be recreated for the change to apply.
  returned: always
  type: bool
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

from ansible_collections.dms.mailserver.plugins.module_utils import _fetchmail
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module

STATES = ['present', 'absent']
PROTOCOLS = ['pop3', 'imap']
FETCHERS = ['fetchmail', 'getmail']
SINGLE = ('server', 'protocol', 'port', 'username', 'password', 'ssl', 'cleartext', 'keep', 'folders', 'target')


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        server=dict(type='str'),
        protocol=dict(type='str', choices=PROTOCOLS),
        port=dict(type='int'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        ssl=dict(type='bool'),
        cleartext=dict(type='bool'),
        keep=dict(type='bool'),
        folders=dict(type='list', elements='str'),
        target=dict(type='str'),
        fetcher=dict(type='str', choices=FETCHERS, default='fetchmail'),
        state=dict(type='str', choices=STATES, default='present'),
        fetches=dict(type='list', elements='dict', options=dict(
            server=dict(type='str', required=True),
            protocol=dict(type='str', choices=PROTOCOLS),
            port=dict(type='int'),
            username=dict(type='str', required=True),
            password=dict(type='str', no_log=True),
            ssl=dict(type='bool'),
            cleartext=dict(type='bool'),
            keep=dict(type='bool'),
            folders=dict(type='list', elements='str'),
            target=dict(type='str'),
            fetcher=dict(type='str', choices=FETCHERS),
            state=dict(type='str', choices=STATES),
        )),
        exclusive=dict(type='bool', default=False),
        validate=dict(type='bool', default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('fetches', name) for name in SINGLE],
        required_one_of=[('server', 'fetches')],
        required_by={'server': 'username'},
        supports_check_mode=True,
    )
    binary = module.get_bin_path('fetchmail') if module.params['validate'] else None

    def plan(cfg, entries):
        result = _fetchmail.plan(cfg, module.params, entries, fetchmail_binary=binary)
        result['restart_required'] = bool(cfg.changed_files())
        return result

    run_module(module, _fetchmail.normalize, plan)


if __name__ == '__main__':
    main()
