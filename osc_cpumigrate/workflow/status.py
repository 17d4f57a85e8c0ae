"""status: where a host and each of its servers stand, read-only.

The phase of a server comes from its domain's ``<cpu>`` (native to the host,
or a transition CPU) and from whether it arrived by a live migration.
"""

from __future__ import annotations

import logging
from typing import Any

from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow.prepare import service_text

LOG = logging.getLogger(__name__)

COLUMNS = ('Kind', 'ID', 'Name', 'Status', 'Phase', 'CPU')


def phase(native: bool, migrated: bool) -> str:
    if native:
        return 'finalized' if migrated else 'unpinned'
    return 'migrated-pinned' if migrated else 'pinned'


def status(ctx: common.Context, host_name: str,
           ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    service = ctx.cloud.compute_service(host_name)
    servers = ctx.cloud.servers_on_host(host_name)
    migrated = common.arrived_live(ctx.cloud, host_name)
    with ctx.host(host_name) as host:
        conf = host.nova_conf()
        host_cpu = host.host_cpu()
        rows: list[tuple[Any, ...]] = [(
            'host', host_name, 'nova-compute', service_text(service),
            'transition' if conf.transitioned else 'normal',
            conf.settings.describe())]
        for server in servers:
            base = ('server', *common.server_row_base(server), server.status)
            if server.status != 'ACTIVE':
                rows.append((*base, 'skipped: %s' % server.status, ''))
                continue
            try:
                guest = host.guest_cpu(server.id)
            except host_api.HostError as exc:
                rows.append((*base, 'unknown: %s' % exc, ''))
                continue
            native = common.is_native(guest, conf.original, host_cpu)
            rows.append((*base, phase(native, server.id in migrated),
                         common.cpu_text(guest)))
    return COLUMNS, rows
