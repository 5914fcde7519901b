#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_config
short_description: Manage docker-mailserver's config-volume files that are not tables, the way DMS applies them
version_added: "0.1.0"
description:
  - Keeps one config-volume file of docker-mailserver (DMS) in the desired state, key by key where the file has
    keys (C(postfix-main.cf), C(postfix-master.cf), C(dovecot.cf)) and as a whole otherwise.
  - Values are rendered the way the program reads them, checked with the real tools where Debian ships them on
    the managed host (C(postconf), C(doveconf), C(bash -n)), and refused with the key and the problem named when
    they are wrong; nothing is written then.
  - Returns RV(restart_required) and RV(applies_live) as DMS behaves for the file (see the table in the notes).
author:
  - dms.mailserver maintainers (@dms-mailserver)
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  file:
    description:
      - The file, relative to O(config_dir).
      - C(postfix-main.cf) (O(settings)), C(postfix-master.cf) (O(services)), C(dovecot.cf) (O(settings) and
        O(sections)).
      - Whole files (O(content)) are C(user-patches.sh), C(fail2ban-jail.cf), C(fail2ban-fail2ban.cf),
        C(spamassassin-rules.cf), C(amavis.cf), C(whitelist_clients.local), C(whitelist_recipients),
        C(rspamd/custom-commands.conf) and C(rspamd/override.d/<name>.conf) (or C(.inc)).
      - An override name is letters, digits, C(.), C(-) and C(_), not starting with C(.); C(/) and C(..) are
        refused. C(rspamd/override.d/dkim_signing.conf) belongs to M(dms.mailserver.dms_dkim) and needs O(force).
    type: str
    required: true
  settings:
    description:
      - For C(postfix-main.cf) and C(dovecot.cf) (its top-level settings), a mapping of key to value.
      - V(null) removes the key. Booleans are written C(yes)/C(no); numbers as text; lists joined with C(, ) for
        Postfix and with a space for Dovecot.
      - Keys and values with line breaks, NUL or other control characters, or text that is not UTF-8, are
        refused. Dovecot values with C({) or C(}) outside a C(%{...}) variable are refused.
      - Dovecot names are checked against the settings of the Dovecot of O(release_line) (2.3 for 15.1, 2.4 for
        16), with the 2.4 replacement named for a 2.3 setting and the reverse.
      - Lines the module does not manage are kept, unless O(exclusive=true).
    type: dict
  services:
    description:
      - For C(postfix-master.cf), a mapping of C(service/type/parameter) to value, written as the line
        C(service/type/parameter=value) that DMS hands to C(postconf -P) at container start.
      - The service must be one of DMS's master.cf (or one DMS adds, such as C(policyd-spf/unix)); other services
        need O(force), because C(postconf -P) only warns about them. Values cannot hold white space (C(postconf -P)
        refuses it); lists are joined with C(,). V(null) removes the line.
    type: dict
  sections:
    description:
      - For C(dovecot.cf), a mapping of section header (C(service imap-login), C(protocol imap),
        C(sieve_script personal)) to a mapping of its settings; nested mappings are nested sections.
      - The section is written whole, replacing a section of the same header; a section that already says the
        same (white space and comments aside) keeps its bytes. V(null) removes the section.
      - The section type is checked for the Dovecot of O(release_line) (C(plugin) exists only in Dovecot 2.3).
    type: dict
  content:
    description:
      - The whole file, for files without a key structure. A final newline is added when missing.
      - C(user-patches.sh) is checked with C(bash -n); Rspamd overrides with the collection's UCL reader;
        C(rspamd/custom-commands.conf) for DMS's commands and their arguments, option names and values DMS's
        C(sed) would alter, and the UCL of the override files the commands make; the Fail2ban files as INI.
    type: str
  state:
    description:
      - V(present) writes what is given.
      - V(absent) removes the keys of O(settings) or O(services) and the sections of O(sections) (their values do
        not matter), or, with none of them given, the whole file.
      - A key-value file left without settings or sections is removed.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - Remove every setting, section, comment and other line that O(settings), O(services) or O(sections) do not
        name. Not for O(content) files.
    type: bool
    default: false
  force:
    description:
      - Write a restriction key that would drop DMS's hook of the send/receive restriction tables, a
        C(postfix-master.cf) service DMS does not have, or C(rspamd/override.d/dkim_signing.conf). A warning says
        what is lost.
    type: bool
    default: false
  mode:
    description:
      - The file's mode, for example V('0600') for C(amavis.cf) or Rspamd overrides that hold secrets. Applied to
        an existing file too.
      - Defaults to C(0755) for C(user-patches.sh) (always applied) and to the existing mode or C(0644) otherwise.
    type: raw
  no_log_content:
    description:
      - Mask the whole content in the diff (a line count is shown) and in the module's output.
      - Without it, the diff masks only the values of keys whose name contains C(password), C(secret) or
        C(token).
    type: bool
    default: false
  release_line:
    description:
      - The DMS release line, for C(dovecot.cf), V('15.1') (Dovecot 2.3) or V('16') (Dovecot 2.4). V('15') is
        read as V('15.1'). Required for C(dovecot.cf) with O(state=present).
    type: str
notes:
  - "When DMS applies each file (DMS's start-up scripts and change detector, the same at v15.1.0 and v16):
    C(postfix-main.cf) is appended to Postfix's main.cf and rewritten with C(postconf -n) (last value wins, a custom
    parameter nothing refers to is dropped); C(postfix-master.cf) lines go through C(postconf -P);
    C(dovecot.cf) becomes C(/etc/dovecot/local.conf) (ignored with C(SMTP_ONLY=1)); C(user-patches.sh) runs last
    with C(/bin/bash); the Fail2ban, SpamAssassin, Amavis and Postgrey files are copied when their feature is
    enabled. All of these are read only when a new container sets itself up: on a restart DMS skips its setup, so
    RV(restart_required) means the container must be recreated."
  - "C(rspamd/custom-commands.conf) and C(rspamd/override.d/*) are also applied live by DMS's change detector
    (with C(ENABLE_RSPAMD=1)), which reloads Rspamd (DMS 15.1 restarts the Rspamd process, DMS 16 sends it
    SIGHUP): RV(applies_live) is true, and RV(restart_required) is false when the change detector's result is what
    a new container would make. It is true otherwise, as DMS's change detector runs the commands again on top of
    C(/etc/rspamd/override.d) as it is: a removed command keeps its effect, C(add-line) adds its line again,
    C(enable-module) and C(disable-module) fail there (only the start-up defines them), an override change wipes
    what the commands made there, and a removed file goes unnoticed. On DMS 15.1 the change detector runs only
    with C(ACCOUNT_PROVISIONER=FILE); with LDAP these files too need a recreated container."
  - "Restriction guard: DMS puts C(check_recipient_access texthash:/tmp/docker-mailserver/postfix-receive-access.cf)
    into C(smtpd_recipient_restrictions) and C(check_sender_access texthash:/tmp/docker-mailserver/postfix-send-access.cf)
    into C(dms_smtpd_sender_restrictions) (reached from C(smtpd_sender_restrictions) and C(mua_sender_restrictions)
    through C($dms_smtpd_sender_restrictions)) at start, before it applies C(postfix-main.cf). A value for one of
    these four keys must keep the hook (or the reference), and a C(postfix-master.cf) override of
    C(smtpd_sender_restrictions) or C(smtpd_recipient_restrictions) must keep a reference to the main.cf value;
    otherwise it is refused unless O(force=true)."
  - "Checks on the managed host: C(postconf) (package postfix) against a scratch copy for both Postfix files,
    including that Postfix booleans are C(yes) or C(no); C(doveconf) (package dovecot-core) for C(dovecot.cf) only
    when the host's Dovecot is the version of O(release_line), otherwise the generated setting lists of that
    Dovecot; C(bash -n) for C(user-patches.sh). C(rspamadm configtest), Fail2ban and Amavis need the container's
    configuration and are not run; for Rspamd the module checks the UCL of the overrides and of what the custom
    commands make of them with the collection's own reader, which needs nothing on the host."
seealso:
  - module: dms.mailserver.dms_dkim
  - name: DMS override configuration
    description: How DMS applies postfix-main.cf, postfix-master.cf and dovecot.cf.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/advanced/override-defaults/postfix/
'''

EXAMPLES = r'''
- name: Postfix settings (booleans and lists are rendered for Postfix)
  dms.mailserver.dms_config:
    file: postfix-main.cf
    settings:
      smtputf8_enable: false
      message_size_limit: 52428800
      mynetworks: [127.0.0.0/8, 192.0.2.0/24]
  register: dms_main

- name: Behind a reverse proxy that speaks the PROXY protocol (HAProxy, Traefik) - Postfix ports
  dms.mailserver.dms_config:
    file: postfix-master.cf
    services:
      smtp/inet/postscreen_upstream_proxy_protocol: haproxy
      submission/inet/smtpd_upstream_proxy_protocol: haproxy
      submissions/inet/smtpd_upstream_proxy_protocol: haproxy

- name: Behind a reverse proxy that speaks the PROXY protocol - Dovecot ports (DMS 16, Dovecot 2.4)
  dms.mailserver.dms_config:
    file: dovecot.cf
    release_line: "16"
    settings:
      haproxy_trusted_networks: 10.0.0.0/8 172.16.0.0/12
    sections:
      service imap-login:
        inet_listener imap:
          haproxy: true
        inet_listener imaps:
          haproxy: true

- name: The same Dovecot settings for DMS 15.1 (Dovecot 2.3)
  dms.mailserver.dms_config:
    file: dovecot.cf
    release_line: "15.1"
    settings:
      haproxy_trusted_networks: 10.0.0.0/8 172.16.0.0/12
    sections:
      service imap-login:
        inet_listener imap:
          haproxy: true

- name: Fail2ban never bans the office network
  dms.mailserver.dms_config:
    file: fail2ban-jail.cf
    content: |
      [DEFAULT]
      ignoreip = 127.0.0.1/8 192.0.2.0/24

- name: An Rspamd override that holds a secret, 0600, masked in the diff
  dms.mailserver.dms_config:
    file: rspamd/override.d/worker-controller.inc
    content: |
      password = "{{ vault_rspamd_controller_hash }}";
    mode: "0600"
    no_log_content: true

- name: Rspamd custom commands (applied live by DMS's change detector)
  dms.mailserver.dms_config:
    file: rspamd/custom-commands.conf
    content: |
      set-option-for-module classifier-bayes autolearn true

- name: A patch script run at container setup
  dms.mailserver.dms_config:
    file: user-patches.sh
    content: |
      #!/bin/bash
      postconf -e 'smtpd_banner = $myhostname ESMTP'

- name: Recreate the container when a file DMS reads only at setup changed
  ansible.builtin.debug:
    msg: recreate the DMS container
  when: dms_main.restart_required

- name: Remove one Postfix setting again
  dms.mailserver.dms_config:
    file: postfix-main.cf
    settings:
      message_size_limit:
    state: absent
'''

RETURN = r'''
file:
  description: The file worked on, relative to O(config_dir).
  returned: always
  type: str
  sample: postfix-main.cf
restart_required:
  description:
    - True when the file's content changed (or, in check mode, would change) and DMS reads it only when a new
      container sets itself up; the container must then be recreated (a restart skips DMS's setup).
    - For the Rspamd files, true when DMS's change detector would leave Rspamd's configuration other than a new
      container makes it (see the notes).
  returned: always
  type: bool
applies_live:
  description:
    - True for the Rspamd files, which DMS's change detector applies without a restart; false for the files read
      only at setup.
  returned: always
  type: bool
changed_files:
  description: Files written (or that would be written in check mode), including a mode correction alone.
  returned: always
  type: list
  elements: str
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

from ansible_collections.dms.mailserver.plugins.module_utils import _config
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        file=dict(type='str', required=True),
        settings=dict(type='dict'),
        services=dict(type='dict'),
        sections=dict(type='dict'),
        content=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        exclusive=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        mode=dict(type='raw'),
        no_log_content=dict(type='bool', default=False),
        release_line=dict(type='str'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('content', 'settings'), ('content', 'services'), ('content', 'sections'),
                            ('settings', 'services')],
        supports_check_mode=True,
    )
    module.no_log_values.update(_config.secret_values(module.params))

    def run(args, data=None):
        return module.run_command(args, data=data, environ_update={'LC_ALL': 'C'})

    tools = _config.Tools(module.get_bin_path, run)
    run_module(module, _config.normalize, lambda cfg, request: _config.plan(cfg, request, tools))


if __name__ == '__main__':
    main()
