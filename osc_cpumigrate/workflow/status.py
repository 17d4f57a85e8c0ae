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

"""status: where each server of a host stands, read-only.

The phase of a server comes from its domain's ``<cpu>`` (native to the host,
or a transition CPU) and from whether it arrived by a live migration.  The
rows are servers only, so a pipeline can select on them without telling a
host line apart; the host itself (service, nova.conf, CPU settings) is
``openstack cpumigrate host show`` (:mod:`.host_show`), and status prints a
one-line summary of it on stderr for a human at a terminal.
"""

from __future__ import annotations

import logging

from osc_cpumigrate import errors
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)


def phase(native: bool, migrated: bool) -> str:
    if native:
        return rows.FINALIZED if migrated else rows.UNPINNED
    return rows.MIGRATED_PINNED if migrated else rows.PINNED


def status(ctx: common.Context, host_name: str) -> list[rows.StatusRow]:
    service = ctx.cloud.compute_service(host_name)
    servers = ctx.cloud.servers_on_host(host_name)
    migrated = common.arrived_live(ctx.cloud, host_name)
    found: list[rows.StatusRow] = []
    try:
        with ctx.host(host_name) as host:
            conf = host.nova_conf()
            host_cpu = host.host_cpu()
            state = common.conf_state(host, conf)
            ctx.progress('%s: nova-compute %s; nova.conf %s (%s)%s' % (
                host_name, common.service_text(service),
                'holds transition settings' if conf.transitioned else (
                    'restored, restart pending (the next pin or prepare '
                    'restarts nova-compute)' if state == 'restart pending'
                    else 'normal'),
                rows.Cpu.of_settings(conf.settings).full(),
                '; %s' % conf.problem if conf.problem else ''))
            for server in servers:
                cpu, reason = None, ''
                if server.status != 'ACTIVE':
                    now, reason = rows.SKIPPED, 'status %s' % server.status
                else:
                    try:
                        guest = host.guest_cpu(server.id)
                    except host_api.HostError as exc:
                        now, reason = rows.UNKNOWN, common.reason(exc)
                    else:
                        cpu = rows.Cpu.of_guest(guest)
                        now = phase(common.is_native(guest, conf.original,
                                                     host_cpu),
                                    server.id in migrated)
                found.append(rows.StatusRow(
                    id=server.id, name=server.name or '', host=host_name,
                    status=server.status, phase=now, reason=reason, cpu=cpu))
    except KeyboardInterrupt as exc:
        # read-only: the rows so far, nothing under way
        raise errors.interrupted(exc, found) from None
    return found
