#   Licensed under the Apache License, Version 2.0 (the "License"); you may
#   not use this file except in compliance with the License. You may obtain
#   a copy of the License at
#
#        http://www.apache.org/licenses/LICENSE-2.0
#
#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#   WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#   License for the specific language governing permissions and limitations
#   under the License.

"""Proving that SSH reached the hypervisor Nova calls by that name.

``ssh intel-1`` reaches whatever the operator's ssh_config, DNS and
``--ssh-host-format`` say: a stale entry, a copy-pasted HostName or a
clouds.yaml for another region sends every change to the wrong machine
(its nova.conf rewritten, its guests restarted).  So before a verb uses a
session, the machine must agree with Nova:

1. the name: nova-compute reports to Nova as ``[DEFAULT] host`` of its
   nova.conf, else the machine's host name (``uname -n``, Nova's default
   ``socket.gethostname()``).  This also works on a host without servers.
2. the domains, when libvirt can list them: no domain belongs to a server
   that Nova places, settled, on another host; and when Nova places ACTIVE
   servers here and the machine has domains, one of them is Nova's.

The name must match and the domains must not contradict it; a mismatch is
one line naming what SSH reached, before anything is changed.  (A single
ACTIVE server without a domain is that server's problem, not the host's:
its row fails.)
"""

from __future__ import annotations

import logging
from typing import Any

from openstack import exceptions as sdk_exc

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.types import HostIdentity

LOG = logging.getLogger(__name__)

#: Unknown domains looked up in Nova at most (each is one API call).
MAX_LOOKUPS = 20


def verify(cloud: Any, host: Any) -> None:
    """WorkflowError unless ``host`` (a session) is Nova's ``host.name``."""
    ident: HostIdentity = host.identity()
    name = host.name
    if ident.compute_name != name:
        where = ('[DEFAULT] host = %s in its nova.conf' % ident.conf_host
                 if ident.conf_host else 'host name %s' % ident.hostname)
        raise WorkflowError(
            'SSH for %s reached a machine whose nova-compute runs as %r '
            '(%s), not %s: check the ssh_config entry, --ssh-host-format '
            'and the cloud; nothing was changed' % (name, ident.compute_name,
                                                    where, name))
    problem = domains_problem(cloud, name, ident.domains)
    if problem:
        raise WorkflowError(
            'SSH for %s reached a machine (%s) whose libvirt domains do not '
            'match Nova: %s; check the ssh_config entry, --ssh-host-format '
            'and the cloud; nothing was changed' % (name, ident.hostname,
                                                    problem))


def domains_problem(cloud: Any, name: str,
                    domains: frozenset[str] | None) -> str | None:
    """Why the domains contradict Nova's placement, or None."""
    if domains is None:
        LOG.debug('%s: cannot list libvirt domains; the name decides', name)
        return None
    placed = cloud.servers_on_host(name)
    active = [s for s in placed if s.status == 'ACTIVE']
    if active and domains and not any(s.id in domains for s in placed):
        return ('none of its %d domain(s) is one of the %d ACTIVE '
                'server(s) Nova places on %s' % (len(domains), len(active),
                                                  name))
    unknown = sorted(domains - {s.id for s in placed})
    for uuid in unknown[:MAX_LOOKUPS]:
        elsewhere = placed_elsewhere(cloud, uuid, name)
        if elsewhere:
            return 'domain %s is server %s' % (uuid, elsewhere)
    return None


def placed_elsewhere(cloud: Any, uuid: str, name: str) -> str | None:
    """'x on intel-2' when Nova places server ``uuid``, settled (not mid
    migration), on another host than ``name``."""
    try:
        server = cloud.get_server(uuid)
    except sdk_exc.NotFoundException:
        return None            # a domain Nova does not know: not ours
    if server.compute_host in (None, name) or server.task_state or (
            server.status in ('MIGRATING', 'RESIZE', 'VERIFY_RESIZE')):
        return None
    return '%s, which Nova places on %s' % (server.name or server.id,
                                           server.compute_host)
