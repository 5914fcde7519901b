#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_dkim
short_description: Manage docker-mailserver DKIM keys for OpenDKIM or Rspamd and return their DNS records
version_added: "0.1.0"
description:
  - Keeps the DKIM signing keys of docker-mailserver (DMS) in the desired state by writing the files of its config
    volume directly, in the layouts DMS's C(setup config dkim) produces, and returns each key's DNS TXT record as
    data (RV(records)) ready for a DNS module.
  - Keys are generated on the managed host with the Python C(cryptography) library; no C(opendkim-genkey),
    C(rspamadm) or container is needed, so keys can be created before the container first starts.
  - "B(OpenDKIM) (O(backend=opendkim), DMS's default): C(opendkim/keys/<domain>/<selector>.private) (PEM, mode
    C(0600)) and C(<selector>.txt) (the zone-file snippet), a C(opendkim/KeyTable) line
    C(<selector>._domainkey.<domain> <domain>:<selector>:/etc/opendkim/keys/<domain>/<selector>.private), a
    C(opendkim/SigningTable) line C(*@<domain> <selector>._domainkey.<domain>) and C(opendkim/TrustedHosts) with
    C(127.0.0.1) and C(localhost) when it is missing or empty. Lines of other domains are kept."
  - "DMS applies OpenDKIM files only when the container is B(created), so RV(restart_required) is V(true) when a
    key or table changed: recreate the container (for example C(docker compose up -d --force-recreate))."
  - "B(Rspamd) (O(backend=rspamd), with C(ENABLE_RSPAMD=1) and C(ENABLE_OPENDKIM=0)):
    C(rspamd/dkim/rsa-<bits>-<selector>-<domain>.private.txt) (or C(ed25519-<selector>-<domain>.private.txt)) with
    C(.public.txt) and C(.public.dns.txt) beside it, and one entry per domain in the C(domain { }) block of
    C(rspamd/override.d/dkim_signing.conf). DMS's change detector reloads Rspamd, no restart is needed."
  - The C(dkim_signing.conf) file is edited, not replaced. Only the entries of the domains given to the module
    are written (C(<domain> { path = \"...\"; selector = \"...\"; })); other domains' entries, all other settings,
    comments and layout are kept. A missing file is created with DMS's default settings.
  - A domain signs with one selector. Asking for another selector points the domain's SigningTable line (or
    C(dkim_signing.conf) entry) at the new key; the old selector's key stays on disk until removed with
    O(state=absent) and that O(selector).
author:
  - dms.mailserver maintainers (@dms-mailserver)
requirements:
  - On the managed host, Python 3.9 or newer with C(cryptography) (3.1 or newer, for Ed25519 and raw key
    serialisation).
extends_documentation_fragment:
  - dms.mailserver.common
  - dms.mailserver.common.attributes
options:
  domain:
    description:
      - The mail domain to manage the key of. Lower-cased (with a warning) when it has upper-case letters.
      - Mutually exclusive with O(domains).
    type: str
    aliases: [name]
  domains:
    description:
      - Several mail domains in one call; every other option applies to each of them.
      - Mutually exclusive with O(domain).
    type: list
    elements: str
  selector:
    description:
      - The DKIM selector. The record is published at C(<selector>._domainkey.<domain>).
      - One or more DNS labels of letters, digits, hyphens and underscores, separated by single dots.
    type: str
    default: mail
  key_type:
    description:
      - The type of a new key. V(rsa) when not given.
      - "V(ed25519) with O(backend=opendkim) needs care: OpenDKIM signs every key with the one
        C(SignatureAlgorithm) of its C(opendkim.conf), and DMS's says C(rsa-sha256), with which OpenDKIM cannot
        sign with an Ed25519 key (it defers mail with C(451 4.7.0)). The module warns. Use it only with an
        C(opendkim.conf) that says C(SignatureAlgorithm ed25519-sha256), or use O(backend=rspamd)."
      - Many receivers do not verify Ed25519 signatures yet; with Rspamd, sign with an RSA key as well.
    type: str
    choices: [rsa, ed25519]
  key_size:
    description:
      - The size in bits of a new RSA key. V(2048) when not given.
      - Not allowed with O(key_type=ed25519).
    type: int
    choices: [1024, 2048, 4096]
  backend:
    description:
      - Which DKIM signer's layout to write. V(opendkim) is DMS's default (C(ENABLE_OPENDKIM=1));
        V(rspamd) is for C(ENABLE_RSPAMD=1) with C(ENABLE_OPENDKIM=0).
      - The two backends' files are independent; different domains can use different backends in one config dir.
    type: str
    choices: [opendkim, rspamd]
    default: opendkim
  regenerate:
    description:
      - What to do with an existing key of the domain and selector.
      - V(never) keeps it (a warning says so when it is not of the requested O(key_type) / O(key_size)).
      - V(fail) keeps it when it matches and fails when it does not (nothing is written).
      - "V(always) replaces it with a new key on B(every) run: a rotation. Publish the new RV(records) right
        away; mail signed with the new key does not verify until DNS serves the new record. For a rotation
        without that gap use a new O(selector): publish its record first, then switch."
    type: str
    choices: [never, fail, always]
    default: never
  state:
    description:
      - V(present) makes sure the key, its tables or signing entry and its public files exist.
      - V(absent) removes the key files of the selector, its KeyTable line and the SigningTable lines that use it
        (OpenDKIM), or its three files and its C(dkim_signing.conf) entry (Rspamd). Other domains and selectors
        are untouched.
    type: str
    choices: [present, absent]
    default: present
  key_owner:
    description:
      - With O(backend=rspamd), the numeric user id to own the key files. Rspamd reads them as its C(_rspamd)
        user B(inside the container), and the private key is mode C(0600); find the id with
        C(docker exec <container> id _rspamd).
      - When not given, new files get the owner of the C(rspamd/dkim) directory (DMS's own C(setup config dkim)
        gives that directory to C(_rspamd)), or of O(config_dir) when it does not exist yet; existing files keep
        their owner. A warning says when Rspamd will likely not be able to read a key.
      - Setting an owner needs root on the managed host.
    type: int
  key_group:
    description:
      - With O(backend=rspamd), the numeric group id for the key files; see O(key_owner).
    type: int
notes:
  - Private keys are written with mode C(0600) through the same locked, atomic write as every file of this
    collection. Existing OpenDKIM private keys are set to C(0600) too (DMS copies them and sets its own modes
    inside the container); existing Rspamd keys keep their mode, as Rspamd may depend on it to read them.
  - Diffs show a private key as its type and public-key fingerprint, never the key.
  - In check mode no key is generated; RV(records) show V(null) values for keys that would be created or rotated.
  - The returned record is C(v=DKIM1; k=<rsa|ed25519>; p=<key>). It carries no C(h=) tag (the key is not
    restricted to C(sha256), which is what signers use anyway) and no C(s=) tag, like DMS's documented records
    and Rspamd's. An existing C(<selector>.txt) or C(.public.txt) that already publishes the key is kept as it is.
  - DMS's C(setup config dkim) appends a SigningTable line for a new selector after the old one, so OpenDKIM
    keeps signing with the old key. This module replaces the domain's line instead.
seealso:
  - module: dms.mailserver.dms_account
  - module: community.general.nsupdate
  - name: DMS DKIM, DMARC and SPF
    description: DMS's documentation of DKIM keys and DNS records.
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/best-practices/dkim_dmarc_spf/
'''

EXAMPLES = r'''
- name: DKIM keys for OpenDKIM (DMS's default), one call for all domains
  dms.mailserver.dms_dkim:
    domains:
      - example.com
      - example.org
  register: dkim

- name: Publish the records with nsupdate (TXT data as quoted strings of at most 255 characters)
  community.general.nsupdate:
    server: ns1.example.net
    key_name: ansible
    key_secret: "{{ vault_tsig_secret }}"
    zone: "{{ item.domain }}"
    record: "{{ item.selector }}._domainkey"
    type: TXT
    value: "{{ item.rdata }}"
  loop: "{{ dkim.records }}"
  loop_control:
    label: "{{ item.name }}"
  when: item.value is not none

- name: An Ed25519 key for Rspamd, files owned by Rspamd's user inside the container
  dms.mailserver.dms_dkim:
    domain: example.com
    selector: ed
    key_type: ed25519
    backend: rspamd
    key_owner: 101
    key_group: 102

- name: Rotate a key (every run of this task makes a new one)
  dms.mailserver.dms_dkim:
    domain: example.com
    regenerate: always

- name: Fail instead of keeping a 1024-bit key when 2048 bits are wanted
  dms.mailserver.dms_dkim:
    domain: example.com
    key_size: 2048
    regenerate: fail

- name: Remove the key of selector mail of a domain
  dms.mailserver.dms_dkim:
    domain: old.example.com
    state: absent
'''

RETURN = r'''
records:
  description:
    - One DNS TXT record per domain (O(state=present)), in the order given.
    - In check mode, a key that would be created or rotated has not been generated yet; its RV(records[].value),
      RV(records[].rdata) and RV(records[].fingerprint) are V(null) and RV(records[].chunks) is empty.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The mail domain.
      type: str
      sample: example.com
    selector:
      description: The DKIM selector.
      type: str
      sample: mail
    name:
      description: The record's fully qualified name, C(<selector>._domainkey.<domain>).
      type: str
      sample: mail._domainkey.example.com
    type:
      description: The record type, always C(TXT).
      type: str
      sample: TXT
    value:
      description:
        - The whole record value as one string. For DNS APIs that split long values themselves.
      type: str
      sample: "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA..."
    chunks:
      description:
        - RV(records[].value) cut into pieces of at most 255 characters, the longest string a TXT record holds.
          Their concatenation is RV(records[].value).
      type: list
      elements: str
    rdata:
      description:
        - The chunks, each in double quotes, separated by a space, as zone files, C(nsupdate) and Route 53 expect
          TXT data.
      type: str
      sample: '"v=DKIM1; k=rsa; p=MIIBIjANBg..." "...IDAQAB"'
    key_type:
      description: The key's type, V(rsa) or V(ed25519) (of the kept key when an existing one was kept).
      type: str
      sample: rsa
    key_size:
      description: The RSA key's size in bits; V(null) for Ed25519.
      type: int
      sample: 2048
    fingerprint:
      description: C(SHA256:) and the unpadded base64 SHA-256 of the public key as published in C(p=).
      type: str
    backend:
      description: V(opendkim) or V(rspamd).
      type: str
    action:
      description: What happened to the key, V(create), V(rotate) or V(keep).
      type: str
      sample: keep
    private_key_file:
      description: The private key's path relative to O(config_dir). Never the key itself.
      type: str
      sample: opendkim/keys/example.com/mail.private
created:
  description: Domains whose key was created.
  returned: always
  type: list
  elements: str
rotated:
  description: Domains whose key was replaced (O(regenerate=always), or a key file that could not be read).
  returned: always
  type: list
  elements: str
updated:
  description: Domains whose key was kept while their tables, signing entry or public files were corrected.
  returned: always
  type: list
  elements: str
removed:
  description: Domains whose key or entries were removed (O(state=absent)).
  returned: always
  type: list
  elements: str
restart_required:
  description:
    - V(true) when an OpenDKIM key, C(KeyTable), C(SigningTable) or C(TrustedHosts) changed. DMS copies them
      only when the container is created, so recreate it. Always V(false) for Rspamd, which DMS reloads.
  returned: always
  type: bool
changed_files:
  description: Files, relative to O(config_dir), written, removed or (in check mode) that would be.
  returned: always
  type: list
  elements: str
  sample: [opendkim/KeyTable, opendkim/SigningTable, opendkim/keys/example.com/mail.private]
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.dms.mailserver.plugins.module_utils import _dkim
from ansible_collections.dms.mailserver.plugins.module_utils._common import common_argument_spec, run_module


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        domain=dict(type='str', aliases=['name']),
        domains=dict(type='list', elements='str'),
        selector=dict(type='str', default='mail'),
        key_type=dict(type='str', choices=list(_dkim.KEY_TYPES), no_log=False),
        key_size=dict(type='int', choices=list(_dkim.RSA_SIZES), no_log=False),
        backend=dict(type='str', choices=list(_dkim.BACKENDS), default='opendkim'),
        regenerate=dict(type='str', choices=list(_dkim.REGENERATE), default='never'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        key_owner=dict(type='int', no_log=False),
        key_group=dict(type='int', no_log=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('domain', 'domains')],
        required_one_of=[('domain', 'domains')],
        supports_check_mode=True,
    )
    if _dkim.CRYPTOGRAPHY_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=_dkim.CRYPTOGRAPHY_IMPORT_ERROR)
    run_module(module, _dkim.normalize, _dkim.plan)


if __name__ == '__main__':
    main()
