#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_info
short_description: Show what a docker-mailserver config dir holds, how it differs from the inventory, and live data
version_added: "0.1.0"
description:
  - Reads the config volume of docker-mailserver (DMS) with the same parsers the state modules of this collection
    use, and returns its accounts, aliases, relays, DKIM keys, master users, Sieve scripts, fetched remote
    mailboxes and other config files as data. Never changes anything; never returns a password hash, a relay or
    fetchmail password, a private key or the text of a Sieve script.
  - With O(compare_to), also returns RV(drift) (missing, extra and different entries per section) against the
    same lists the state modules take, so a job can report what differs from the inventory without changing it.
  - With O(container), also reads live data from the running container through the engine's C(exec) - quota usage
    and message count per account, whether DMS's change detector has applied the current files, and the image's
    DMS version.
author:
  - dms.mailserver maintainers (@dms-mailserver)
options:
  config_dir:
    description:
      - The DMS config directory on the managed host, the host side of the volume DMS mounts at
        C(/tmp/docker-mailserver). A missing directory is reported as empty (RV(config_dir_exists) is V(false)).
    type: path
    default: /opt/docker-mailserver/docker-data/dms/config
  lock_timeout:
    description:
      - Seconds to wait for a run of a state module that is changing the config dir (its lock,
        C(<config_dir>/.dms-mailserver.lock)); the files are read under a shared lock, so never half-written.
    type: int
    default: 30
  backup:
    description:
      - Ignored (the module writes nothing); accepted so that C(module_defaults) of the action group
        C(group/dms.mailserver.dms) that set it for the state modules reach this module too.
    type: bool
    default: false
  gather:
    description:
      - The sections to read. Fewer sections answer faster on big servers (V(accounts) alone for 10,000 accounts).
      - Default is every section; an empty list reads none (for O(compare_to) or the live data alone).
    type: list
    elements: str
    choices: [accounts, aliases, relays, dkim, masters, sieve, fetches, config]
  compare_to:
    description:
      - The desired state to compare with, as a mapping of section to the list its module takes
        (C(accounts) as M(dms.mailserver.dms_account)'s O(dms.mailserver.dms_account#module:accounts),
        C(aliases) as M(dms.mailserver.dms_alias)'s O(dms.mailserver.dms_alias#module:aliases), C(relays) as
        M(dms.mailserver.dms_relay)'s O(dms.mailserver.dms_relay#module:relays), C(dkim) as a list of
        M(dms.mailserver.dms_dkim) option sets (C(domain) or C(domains), C(selector), C(backend), C(key_type),
        C(key_size), C(state)), C(masters) as M(dms.mailserver.dms_dovecot_master)'s
        O(dms.mailserver.dms_dovecot_master#module:masters), C(sieve) as M(dms.mailserver.dms_sieve)'s
        O(dms.mailserver.dms_sieve#module:scripts), C(fetches) as M(dms.mailserver.dms_fetchmail)'s
        O(dms.mailserver.dms_fetchmail#module:fetches), C(config) as a list of M(dms.mailserver.dms_config) option
        sets).
      - Master users are compared by name, Sieve scripts by address (or global scope) and text, remote mailboxes by
        server and username; a user's neutral script (what M(dms.mailserver.dms_sieve) leaves for
        C(state=absent)) counts as no script.
      - Entries are validated as their module validates them; an error names the entry, for example
        C(compare_to.accounts[2].address).
      - Nothing is hashed, except to tell whether a given password matches the stored hash, and only with
        O(verify_passwords=true).
    type: dict
  verify_passwords:
    description:
      - With O(compare_to), check each given account O(dms.mailserver.dms_account#module:accounts[].password)
        against the stored hash (the collection's hashing engine; slow by design for SHA512-CRYPT and ARGON2ID)
        and each relay password against the stored one; the same for master users (O(compare_to) C(masters), the
        same hashing engine) and remote mailboxes (C(fetches), compared with the stored password, never hashed).
        A mismatch is reported as C(password) in RV(drift).
      - V(false) compares passwords only by whether the account or credentials exist (a given
        C(password_hash) is still compared as a string, for accounts and master users).
    type: bool
    default: false
  container:
    description:
      - The name or ID of the running DMS container; adds RV(live) and each account's RV(accounts[].usage).
      - Read with C(docker exec) or C(podman exec) with argument lists (no shell), and no secret on any command
        line; the commands are C(printenv), C(cat) of the change detector's checksum file and C(doveadm).
    type: str
  engine:
    description: The container engine whose C(exec) reads the live data.
    type: str
    choices: [docker, podman]
    default: docker
extends_documentation_fragment:
  - dms.mailserver.common.attributes
attributes:
  check_mode:
    support: full
    details:
      - The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
    details:
      - Nothing changes, so there is nothing to show.
notes:
  - The config dir is read under a shared lock when its lock file exists; the module writes nothing, not even the
    lock file.
  - The live data and the config dir are assumed to be on the same host (the config dir is the container's
    volume); the change detector state compares the files' SHA-512 sums with the ones DMS recorded in
    C(/tmp/docker-mailserver-config-chksum) when it last applied them.
  - The module calls the engine's command line itself (it cannot call C(community.docker.docker_container_exec)
    from inside a module); the argument lists are the same.
seealso:
  - module: dms.mailserver.dms_account
  - module: dms.mailserver.dms_alias
  - module: dms.mailserver.dms_relay
  - module: dms.mailserver.dms_dkim
  - module: dms.mailserver.dms_dovecot_master
  - module: dms.mailserver.dms_sieve
  - module: dms.mailserver.dms_fetchmail
  - module: dms.mailserver.dms_config
'''

EXAMPLES = r'''
- name: What the server has
  dms.mailserver.dms_info:
    config_dir: /srv/dms/config
  register: dms

- name: Accounts only, with quota usage from the running container (fast on 10,000 accounts)
  dms.mailserver.dms_info:
    config_dir: /srv/dms/config
    gather: [accounts]
    container: mailserver

- name: What differs from the inventory (no change made)
  dms.mailserver.dms_info:
    config_dir: /srv/dms/config
    compare_to:
      accounts: "{{ dms_accounts }}"
      aliases: "{{ dms_aliases }}"
      relays: "{{ dms_relays }}"
      dkim:
        - domains: [example.com, example.org]
          selector: mail
      masters:
        - name: admin
      fetches: "{{ dms_fetches }}"
  register: dms

- name: Which mailboxes have a Sieve filter, and where mail is fetched from
  dms.mailserver.dms_info:
    config_dir: /srv/dms/config
    gather: [sieve, fetches]
  register: dms

- name: Fail the job when the server drifted
  ansible.builtin.assert:
    that: dms.in_sync
    fail_msg: "{{ dms.drift | to_nice_yaml }}"
'''

RETURN = r'''
config_dir:
  description: The config dir read.
  returned: always
  type: str
config_dir_exists:
  description: Whether O(config_dir) exists (a missing one reads as empty).
  returned: always
  type: bool
sections:
  description: The sections read (O(gather)).
  returned: always
  type: list
  elements: str
accounts:
  description:
    - The accounts of C(postfix-accounts.cf) in file order. Never a hash.
    - Each item has RV(accounts[].address) and RV(accounts[].scheme); every other key is only there when the
      account has it (a quota line, a restriction, Dovecot extra fields, an alias). A missing key means no quota
      line of its own, no restriction, no extra fields, no alias; read them with a default, for example
      C(item.restrict | default([])). This keeps the result of 10,000 accounts small enough for Ansible to
      handle quickly.
  returned: when V(accounts) is gathered
  type: list
  elements: dict
  sample: [{address: alice@example.com, scheme: SHA512-CRYPT, quota: 10M, aliases: [info@example.com]},
           {address: bob@example.com, scheme: ARGON2ID, restrict: [send], extra_fields: true}]
  contains:
    address:
      description: The address as written.
      type: str
      returned: always
    scheme:
      description: The password hash's scheme (C(SHA512-CRYPT), C(ARGON2ID), ...), or null without a C({SCHEME}).
      type: str
      returned: always
    quota:
      description: The account's line of C(dovecot-quotas.cf) (C(10M), C(0) = unlimited).
      type: str
      returned: when the account has a line of its own in C(dovecot-quotas.cf)
    quota_applied:
      description:
        - Only when DMS applies another line (its quota lookup is a substring match, so the line of a longer
          address such as C(jimbob@) for C(bob@) standing first wins).
      type: str
      returned: when it differs from RV(accounts[].quota)
    restrict:
      description: The restrictions, C(send) and/or C(receive) (C(setup email restrict)), sorted.
      type: list
      elements: str
      returned: when the account has a restriction
    extra_fields:
      description: V(true), the line has Dovecot extra fields after the hash.
      type: bool
      returned: when the line has Dovecot extra fields
    aliases:
      description: The C(postfix-virtual.cf) aliases that list the account as a recipient (what C(setup email list) shows).
      type: list
      elements: str
      returned: when an alias lists the account
    usage:
      description:
        - Live quota usage from C(doveadm quota get) (or, with quotas off, C(doveadm mailbox status)) in KiB, the
          limit in KiB (null = none), the percentage and the message count.
      type: dict
      returned: with O(container)
      sample: {used_kib: 120, limit_kib: 10240, percent: 1, messages: 3, message_limit: null}
aliases:
  description:
    - The aliases in file order, C(postfix-virtual.cf) then C(postfix-regexp.cf), with C(type), C(alias) and
      C(recipients). Virtual aliases also have C(catch_all) and C(self_alias) (the line that keeps a catch-all or
      regexp alias from taking the account's mail, which M(dms.mailserver.dms_account) and
      M(dms.mailserver.dms_alias) keep in step); a later duplicate of a key has C(duplicate=true).
  returned: when V(aliases) is gathered
  type: list
  elements: dict
  sample: [{type: virtual, alias: '@example.com', recipients: [admin@example.com], catch_all: true, self_alias: false}]
relays:
  description:
    - Every key of C(postfix-relaymap.cf) and C(postfix-sasl-password.cf) with C(key), C(domain) (null for
      credentials of a relay host), C(host), C(port), C(exclude) (an opt-out) and C(credentials) (whether the
      SASL file has a line for it). Never a password.
  returned: when V(relays) is gathered
  type: list
  elements: dict
  sample: [{key: '@example.com', domain: example.com, host: smtp.mailgun.org, port: 587, exclude: false, credentials: true}]
dkim:
  description:
    - The DKIM keys, OpenDKIM's (C(opendkim/KeyTable)) then Rspamd's (C(dkim_signing.conf)), each exactly as
      M(dms.mailserver.dms_dkim) returns it in its RV(dms.mailserver.dms_dkim#module:records) with C(action=keep)
      (C(domain), C(selector), C(name), C(value), C(chunks), C(rdata), C(key_type), C(key_size), C(fingerprint),
      C(backend), C(private_key_file)). A key that cannot be read has C(value=null) and C(error).
  returned: when V(dkim) is gathered
  type: list
  elements: dict
masters:
  description:
    - The Dovecot master users of C(dovecot-masters.cf) in file order, with C(name) and the hash's C(scheme).
      Never a hash.
  returned: when V(masters) is gathered
  type: list
  elements: dict
  sample: [{name: admin, scheme: SHA512-CRYPT}]
sieve:
  description:
    - The Sieve scripts of the config dir, never their text. Per-user scripts (C(<address>.dovecot.sieve), by file
      name) have C(kind=user), C(address) and C(neutral) (V(true) when the file is the script that
      M(dms.mailserver.dms_sieve) writes for C(state=absent), which only keeps mail); then the global scripts that
      exist, with C(kind=global) and C(scope) (C(before), C(after)).
  returned: when V(sieve) is gathered
  type: list
  elements: dict
  sample: [{kind: user, address: alice@example.com, neutral: false}, {kind: global, scope: before}]
fetches:
  description:
    - The remote mailboxes DMS collects, from C(fetchmail.cf) (file order, one item per user clause) then
      C(getmail/*.cf) (file name order), with C(fetcher), C(file), C(server), C(username), C(protocol) (null when
      fetchmail probes), C(port) (null for the protocol's), C(target) (the local account), C(ssl), C(keep)
      (fetchmail's defaults and C(defaults) statements applied; for getmail, C(delete) of the base options),
      C(folders) and C(password_set). Never a password.
    - A file that cannot be read is an item with C(file) and C(error) instead.
  returned: when V(fetches) is gathered
  type: list
  elements: dict
  sample: [{fetcher: fetchmail, file: fetchmail.cf, server: imap.example.net, username: alice, protocol: imap,
            port: null, target: alice@example.com, ssl: true, keep: true, folders: [], password_set: true}]
config:
  description:
    - The non-table files M(dms.mailserver.dms_config) manages that exist, with C(file), C(kind), C(applies)
      (C(container_start) or C(change_detector)), and the names (never the values) of the C(settings),
      C(services) or C(sections) in them.
  returned: when V(config) is gathered
  type: list
  elements: dict
  sample: [{file: postfix-main.cf, kind: postfix_main, applies: container_start, settings: [message_size_limit]}]
drift:
  description:
    - Per section of O(compare_to), C(missing) (listed and absent), C(extra) (present and not listed, or listed
      with C(state=absent)) and C(different) (present but differing; C(fields) names what differs, never a value).
  returned: with O(compare_to)
  type: dict
  sample: {accounts: {missing: [new@example.com], extra: [old@example.com], different: [{address: a@example.com, fields: [quota]}]}}
in_sync:
  description: Whether RV(drift) is empty in every section.
  returned: with O(compare_to)
  type: bool
live:
  description:
    - C(dms_release) (the image's C(DMS_RELEASE), which DMS sets at build time; DMS has no C(/VERSION) file since
      v14), C(change_detector) (C(applied) and the C(pending) files whose content DMS has not applied yet),
      C(quota_source).
  returned: with O(container)
  type: dict
  sample: {dms_release: v15.1.0, change_detector: {applied: true, pending: []}, quota_source: doveadm quota get}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dms.mailserver.plugins.module_utils import _info
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import DEFAULT_CONFIG_DIR, ConfigDir, ConfigDirError
from ansible_collections.dms.mailserver.plugins.module_utils._common import finish
from ansible_collections.dms.mailserver.plugins.module_utils._validate import ValidationError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type='path', default=DEFAULT_CONFIG_DIR),
            lock_timeout=dict(type='int', default=30),
            backup=dict(type='bool', default=False),
            gather=dict(type='list', elements='str', choices=list(_info.SECTIONS)),
            compare_to=dict(type='dict', no_log=False),
            verify_passwords=dict(type='bool', default=False),
            container=dict(type='str'),
            engine=dict(type='str', choices=['docker', 'podman'], default='docker'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # Passwords given in compare_to are secrets even though the option as a whole is not.
    for section in ('accounts', 'relays', 'masters', 'fetches'):
        for item in (params.get('compare_to') or {}).get(section) or []:
            if isinstance(item, dict):
                for name in ('password', 'password_hash'):
                    if isinstance(item.get(name), str) and item[name]:
                        module.no_log_values.add(item[name])
    if params['lock_timeout'] < 0:
        finish(module, {'msg': 'lock_timeout: %r must be 0 or more seconds' % params['lock_timeout']}, failed=True)
    try:
        cfg = ConfigDir(params['config_dir'], lock_timeout=params['lock_timeout'], check_mode=True)
        with cfg:
            gathered = list(_info.SECTIONS) if params.get('gather') is None else params['gather']
            if 'dkim' in gathered or 'dkim' in (params.get('compare_to') or {}):
                # Imported only when needed: gather=[accounts] on a big server answers faster without it.
                from ansible_collections.dms.mailserver.plugins.module_utils import _dkim
                if _dkim.CRYPTOGRAPHY_IMPORT_ERROR and (cfg.read('opendkim/KeyTable') is not None
                                                        or cfg.read(_dkim.RSPAMD_SIGNING_CONF) is not None):
                    from ansible.module_utils.basic import missing_required_lib
                    finish(module, {'msg': missing_required_lib('cryptography'),
                                    'exception': _dkim.CRYPTOGRAPHY_IMPORT_ERROR}, failed=True)
            result = _info.run(cfg, params)
            if params.get('container'):
                engine = module.get_bin_path(params['engine'], required=True)

                def exec_argv(argv):
                    return module.run_command([engine, 'exec', params['container']] + list(argv),
                                              environ_update={'LC_ALL': 'C'})
                state = module.run_command([engine, 'inspect', '-f', '{{.State.Running}}', params['container']])
                if state[0] != 0 or state[1].strip() != 'true':
                    raise ValidationError('container: %r is not a running container of %s%s'
                                          % (params['container'], params['engine'],
                                             (': ' + state[2].strip()[:200]) if state[2].strip() else ''))
                live, usage = _info.live(cfg, exec_argv, 'accounts' in result)
                result['live'] = live
                for account in result.get('accounts', []):
                    account['usage'] = usage.get(account['address'].lower())
    except (ValidationError, ConfigDirError, _info.LiveError) as exc:
        finish(module, {'msg': str(exc)}, failed=True)
    result['changed'] = False
    finish(module, result)


if __name__ == '__main__':
    main()
