#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: dms_fail2ban
short_description: Ban, unban and list addresses in the Fail2ban of a running docker-mailserver container
version_added: "0.1.0"
description:
  - Bans and unbans IPv4/IPv6 addresses and CIDR networks in the Fail2ban of a running docker-mailserver (DMS)
    container, and lists its jails and what each has banned. It is what DMS's C(setup fail2ban) does, as a
    declarative, idempotent task.
  - O(state=banned) bans in one jail, by default C(custom), the jail DMS keeps for manual bans and the one
    C(setup fail2ban ban) uses. O(state=unbanned) takes the addresses out of every jail that holds them, as
    C(setup fail2ban unban) does (or only out of O(jail) when it is given). O(state=query) changes nothing and
    returns the jails and their banned addresses.
  - The module runs C(fail2ban-client) in the container through the engine's C(exec) (C(docker exec) or
    C(podman exec)), always as an argument list, never through a shell. It reads C(fail2ban-client banned) before
    and after, and reports C(changed) only when a ban or an unban really happened.
  - It refuses, before changing anything, an address that is not an IPv4/IPv6 address or CIDR network, a jail the
    server does not have, a container that does not exist or is not running, a container without
    C(ENABLE_FAIL2BAN=1) or whose Fail2ban does not answer C(fail2ban-client ping), and any address covered by the
    jail's C(ignoreip) (Fail2ban itself would ban it when told to, and C(ignoreip) usually lists the operator's own
    networks).
author:
  - dms.mailserver maintainers (@dms-mailserver)
options:
  container:
    description:
      - The name or ID of the running DMS container, on the managed host.
    type: str
    required: true
  engine:
    description:
      - The container engine whose CLI runs C(exec) on the managed host.
    type: str
    choices: [docker, podman]
    default: docker
  ip:
    description:
      - One IPv4 or IPv6 address, or a CIDR network (V(192.0.2.0/24), V(2001:db8::/64)) with no host bits set.
      - Checked with Python's C(ipaddress); given to Fail2ban in its short form (an address without C(/32)).
      - Mutually exclusive with O(ips). One of them is required unless O(state=query).
    type: str
  ips:
    description:
      - Several addresses or networks, each as in O(ip), handled in one run. All are checked before any is
        banned or unbanned; one refused address leaves Fail2ban as it was.
    type: list
    elements: str
  jail:
    description:
      - The jail to ban in. Defaults to V(custom), the jail of DMS's C(setup fail2ban ban) (manual bans, 180 days,
        all mail ports).
      - With O(state=unbanned), the default is every jail that holds the address, as C(setup fail2ban unban);
        a jail given here limits the unban to it.
      - Must be one of the running server's jails (C(fail2ban-client status)); an unknown jail is refused.
    type: str
  state:
    description:
      - V(banned) bans O(ip)/O(ips) in O(jail) unless already banned there.
      - V(unbanned) unbans them wherever they are banned. An address that is only covered by a banned wider
        network stays blocked; the module warns and names that network.
      - V(query) changes nothing and returns RV(jails), RV(banned), RV(totals) and RV(total). Querying is part of
        this module (not a separate C(_info) module) so that one task shape covers the daily chores; it is
        always C(changed=false) and safe in check mode.
    type: str
    choices: [banned, unbanned, query]
    default: banned
  protect:
    description:
      - Addresses or networks the operator must not lose, for example the SSH allow list of the
        C(dms.mailserver.firewall) role (pass C("{{ dms_firewall_ssh_sources }}")). Banning an address that
        overlaps one of them is done, with a warning.
      - The module also warns when a ban covers the address this run comes from as the managed host sees it (the
        client address of C(SSH_CONNECTION)).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Whether C(--check) runs predict changes without making them.
    support: full
    details:
      - Reads the container's Fail2ban and reports the bans and unbans a real run would make (RV(actions)),
        without making them.
  diff_mode:
    description: Whether C(--diff) shows what changed.
    support: full
    details:
      - Shows the banned addresses per jail before and after.
  platform:
    description: The systems the module can manage.
    support: full
    platforms: posix
notes:
  - The module is not in the action group C(dms.mailserver.dms), because that group's defaults (such as
    C(config_dir)) are options it does not have.
  - Requirements on the managed host (where the container runs) are the engine's CLI (C(docker) or C(podman)) and
    permission to use it. No Python library is needed. The container needs DMS's C(ENABLE_FAIL2BAN=1) and, for
    bans to block anything, the C(NET_ADMIN) capability; without it DMS's Fail2ban still lists the ban but
    nftables refuses the rule (see C(setup fail2ban log)). The module then warns (O(state=banned) and
    O(state=query)); it reads the capability from C(/proc/1/status) in the container.
  - DMS drops the packets of a banned address (C(FAIL2BAN_BLOCKTYPE=drop), the default), so its connections time
    out rather than being refused; with C(FAIL2BAN_BLOCKTYPE=reject) they are refused.
  - Bans live in the container's Fail2ban database (C(/var/lib/fail2ban)); they survive a restart of Fail2ban and
    of the container, and are lost when the container is recreated unless DMS keeps its state on a volume.
  - For a permanent C(ignoreip), write C(fail2ban-jail.cf) with M(dms.mailserver.dms_config); DMS reads it when a
    container is created.
  - Nothing secret passes through this module; no value of the container's environment other than
    C(ENABLE_FAIL2BAN) is read.
seealso:
  - module: dms.mailserver.dms_config
  - name: DMS and Fail2ban
    description: How DMS runs Fail2ban, its jails and C(setup fail2ban).
    link: https://docker-mailserver.github.io/docker-mailserver/latest/config/security/fail2ban/
'''

EXAMPLES = r'''
- name: Equivalent of "setup fail2ban ban 203.0.113.45" (jail custom)
  dms.mailserver.dms_fail2ban:
    container: mailserver
    ip: 203.0.113.45

- name: Ban a whole network of an abuser, never the operator's SSH sources
  dms.mailserver.dms_fail2ban:
    container: mailserver
    ip: 198.51.100.0/24
    protect: "{{ dms_firewall_ssh_sources }}"

- name: Unban a customer's office wherever Fail2ban banned it (setup fail2ban unban)
  dms.mailserver.dms_fail2ban:
    container: mailserver
    ips:
      - 192.0.2.10
      - 2001:db8:10::/64
    state: unbanned

- name: What is banned, as data
  dms.mailserver.dms_fail2ban:
    container: mailserver
    engine: podman
    state: query
  register: f2b

- name: Show the totals
  ansible.builtin.debug:
    msg: "{{ f2b.total }} addresses banned; per jail {{ f2b.totals }}"
'''

RETURN = r'''
actions:
  description: The bans and unbans made, or in check mode those a real run would make, in order.
  returned: always
  type: list
  elements: dict
  sample: [{action: ban, jail: custom, ip: 203.0.113.45}]
jails:
  description: The jails of the container's Fail2ban, sorted.
  returned: always
  type: list
  elements: str
  sample: [custom, dovecot, postfix]
banned:
  description: Per jail, the banned addresses and networks as Fail2ban lists them, after the run (in check mode, as
    they would be).
  returned: always
  type: dict
  sample: {custom: [203.0.113.45], dovecot: [], postfix: [198.51.100.7]}
totals:
  description: Per jail, the number of banned addresses and networks.
  returned: always
  type: dict
  sample: {custom: 1, dovecot: 0, postfix: 1}
total:
  description: The number of distinct addresses and networks banned in any jail.
  returned: always
  type: int
  sample: 2
container:
  description: The container worked on.
  returned: always
  type: str
  sample: mailserver
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dms.mailserver.plugins.module_utils import _fail2ban


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type='str', required=True),
            engine=dict(type='str', choices=['docker', 'podman'], default='docker'),
            ip=dict(type='str'),
            ips=dict(type='list', elements='str'),
            jail=dict(type='str'),
            state=dict(type='str', choices=['banned', 'unbanned', 'query'], default='banned'),
            protect=dict(type='list', elements='str', default=[]),
        ),
        mutually_exclusive=[('ip', 'ips')],
        required_if=[('state', 'banned', ('ip', 'ips'), True), ('state', 'unbanned', ('ip', 'ips'), True)],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params['ip'] is not None:
            ips = [_fail2ban.parse_ip(params['ip'], 'ip')]
        else:
            ips = _fail2ban.networks(params['ips'], 'ips')
        if params['ips'] is not None and not ips and params['state'] != 'query':
            raise _fail2ban.Fail2banError('ips: at least one address is required')
        protect = _fail2ban.networks(params['protect'], 'protect')
        jail = params['jail']
        if jail is not None:
            _fail2ban.check_jail(jail)
        elif params['state'] == 'banned':
            jail = _fail2ban.DEFAULT_JAIL
        if not params['container'] or '\n' in params['container'] or params['container'].startswith('-'):
            raise _fail2ban.Fail2banError('container: %r is not a container name or ID' % params['container'])
        engine = _fail2ban.Engine(module, params['engine'], params['container'])
        engine.require_running()
        f2b = _fail2ban.Fail2ban(engine.run, 'container %s' % params['container'])
        f2b.require_running(engine.env('ENABLE_FAIL2BAN'))
        if params['state'] == 'query':
            result, warnings = _fail2ban.summary(f2b.banned()), []
            result.update(changed=False, actions=[])
        else:
            result, warnings = _fail2ban.plan_and_apply(
                f2b, params['state'], ips, jail, module.check_mode, protect=protect,
                controller=_fail2ban.ssh_client_address(os.environ))
        if params['state'] != 'unbanned' and engine.net_admin() is False:
            warnings.append(_fail2ban.NO_NET_ADMIN % ('container %s' % params['container']))
    except _fail2ban.Fail2banError as exc:
        module.fail_json(msg=str(exc), container=params['container'])
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    for warning in warnings:
        module.warn(warning)
    result['container'] = params['container']
    module.exit_json(**result)


if __name__ == '__main__':
    main()
