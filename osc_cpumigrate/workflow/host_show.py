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

"""host show: one host's compute service, nova.conf and CPU settings.

The host summary ``status`` used to print as its first row, as a command of
its own (a cliff ShowOne): in ``-f json`` a host is one object with its own
keys, never a row posing as a server among servers.
"""

from __future__ import annotations

import logging

from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)


def show_host(ctx: common.Context, host_name: str) -> rows.HostRow:
    service = ctx.cloud.compute_service(host_name)
    servers = ctx.cloud.servers_on_host(host_name)
    with ctx.host(host_name) as host:
        conf = host.nova_conf()
        state = common.conf_state(host, conf)
    return rows.HostRow(
        host=host_name, service_status=service.status,
        service_state=service.state,
        disabled_reason=service.disabled_reason or '',
        nova_conf=state,
        path=conf.path, cpu=rows.Cpu.of_settings(conf.settings),
        original_cpu=rows.Cpu.of_settings(conf.original),
        backup=conf.backup or '',
        changed_at=(conf.changed_at.strftime('%Y-%m-%dT%H:%M:%SZ')
                    if conf.changed_at else ''),
        destinations=', '.join(conf.destinations),
        servers=len(servers), problem=conf.problem or '')
