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
        servers=len(servers), problem=conf.problem or '')
