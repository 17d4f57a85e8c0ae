"""finalize: runbook steps 9-10 on the destination host.

Restart, one at a time, every ACTIVE server that still runs a transition CPU,
so libvirt rebuilds its domain with the destination's own CPU, and verify it.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from osc_cpumigrate.cloud import stopped_by_us
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)

COLUMNS = ('Server', 'Name', 'Status', 'CPU Before', 'CPU After', 'Result')


def finalize(ctx: common.Context, host_name: str,
             server_names: Sequence[str], method: str,
             dry_run: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    common.check_restart_method(method)
    ctx.cloud.compute_service(host_name)
    servers = ctx.cloud.selected_servers(host_name, server_names)
    with ctx.host(host_name) as host:
        conf = host.nova_conf()
        if conf.transitioned:
            raise WorkflowError(
                '%s still holds transition CPU settings in its nova.conf: a '
                'restart there would pin servers, not finalize them (run '
                '"openstack cpumigrate pin %s" to finish and restore it)'
                % (host_name, host_name))
        host_cpu = host.host_cpu()
        arrived = common.arrived_live(ctx.cloud, host_name)
        rows: dict[str, tuple[Any, ...]] = {}
        todo: list[tuple[Any, host_api.GuestCpu]] = []
        for server in servers:
            base = (*common.server_row_base(server), server.status)
            if stopped_by_us(server):
                # An interrupted stop-start: start it to finish.
                todo.append((server, host_api.GuestCpu(None, None)))
                continue
            if server.status != 'ACTIVE':
                rows[server.id] = (*base, '', '', 'skipped: %s'
                                   % server.status)
                continue
            guest = host.guest_cpu(server.id)
            if common.is_native(guest, conf.original, host_cpu):
                rows[server.id] = (*base, common.cpu_text(guest),
                                   common.cpu_text(guest), 'already finalized')
            elif server.id not in arrived:
                # Not moved here by a live migration (a source host named
                # by mistake, say): restarting it would undo pin.
                rows[server.id] = (*base, common.cpu_text(guest), '',
                                   'skipped: did not arrive by live '
                                   'migration')
            else:
                todo.append((server, guest))

        if dry_run:
            for server, guest in todo:
                rows[server.id] = (*common.server_row_base(server),
                                   server.status, common.cpu_text(guest), '',
                                   'would restart (%s)' % method)
            return COLUMNS, common.ordered(servers, rows)

        if todo:
            ctx.approve('restart %d server(s) on %s (%s) so they get the '
                        'host\'s own CPU: %s' % (
                            len(todo), host_name, method,
                            ', '.join(s.name or s.id for s, _ in todo)),
                        dry_run)
        failures: list[str] = []
        for server, guest in todo:
            base = (*common.server_row_base(server), server.status)
            if failures:
                rows[server.id] = (*base, common.cpu_text(guest), '',
                                   'not restarted: the run stopped')
                continue
            ctx.progress('%s: restarting %s (%s)' % (host_name, server.name,
                                                     method))
            try:
                server = ctx.cloud.restart_server(server, method,
                                                  ctx.server_timeout)
                after = host.guest_cpu(server.id)
                if not common.is_native(after, conf.original, host_cpu):
                    raise WorkflowError('its domain still runs %s' %
                                        common.cpu_text(after))
            except common.RECOVERABLE as exc:
                why = common.reason(exc)
                failures.append('%s: %s' % (server.name or server.id, why))
                rows[server.id] = (*base, common.cpu_text(guest), '',
                                   'failed: %s' % why)
                continue
            rows[server.id] = (*base, common.cpu_text(guest),
                               common.cpu_text(after), 'finalized')
        return common.fail_if(failures, COLUMNS,
                              common.ordered(servers, rows))
