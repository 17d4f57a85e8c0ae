"""pin: runbook steps 4-7 on the prepared source host.

Restart each ACTIVE server, one at a time, so libvirt rebuilds its domain with
the transition CPU, and verify the domain's ``<cpu>``.  Then put the original
nova.conf back and restart nova-compute: the servers keep the transition CPU
until they are restarted again (finalize, on the destination).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from osc_cpumigrate.cloud import stopped_by_us
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow.prepare import restart_compute

LOG = logging.getLogger(__name__)

COLUMNS = ('Server', 'Name', 'Status', 'CPU Before', 'CPU After', 'Result')

#: (server, transition settings, host) -> None, or why the server must not
#: be restarted on the transition CPU (its guest floor).
FloorCheck = Callable[[Any, host_api.CpuSettings, host_api.Host], 'str | None']


def pin(ctx: common.Context, host_name: str, server_names: Sequence[str],
        method: str, dry_run: bool,
        floor_check: FloorCheck | None = None,
        ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    common.check_restart_method(method)
    ctx.cloud.compute_service(host_name)
    servers = ctx.cloud.selected_servers(host_name, server_names)
    with ctx.host(host_name) as host:
        conf = host.nova_conf()
        host_cpu = host.host_cpu()
        rows: dict[str, tuple[Any, ...]] = {}
        todo: list[tuple[Any, host_api.GuestCpu]] = []
        failures: list[str] = []
        keep_transition = False
        for server in servers:
            doing = common.busy(server)
            if doing:
                # e.g. a reboot an interrupted run left: restoring nova.conf
                # under it would give the server the native CPU again.
                failures.append('%s is busy: %s' % (server.name or server.id,
                                                    doing))
                rows[server.id] = (*common.server_row_base(server),
                                   server.status, '', '',
                                   'busy: %s; run pin again when it is '
                                   'done' % doing)
                keep_transition = True
                continue
            if stopped_by_us(server):
                # An interrupted stop-start: starting it now (on the
                # transition settings) finishes its restart.
                todo.append((server, host_api.GuestCpu(None, None)))
                continue
            if server.status != 'ACTIVE':
                rows[server.id] = (*common.server_row_base(server),
                                   server.status, '', '',
                                   'skipped: %s' % server.status)
                continue
            guest = host.guest_cpu(server.id)
            if conf.transitioned:
                pinned = common.runs_transition(guest, conf.settings)
            else:
                pinned = not common.is_native(guest, conf.original, host_cpu)
            if pinned:
                rows[server.id] = (*common.server_row_base(server),
                                   server.status, common.cpu_text(guest),
                                   common.cpu_text(guest), 'already pinned')
            else:
                todo.append((server, guest))

        if todo and not conf.transitioned:
            raise WorkflowError(
                '%s is not prepared: its nova.conf does not hold transition '
                'CPU settings; run "openstack cpumigrate prepare %s" first'
                % (host_name, host_name))
        restarted = common.compute_restarted_since_transition(host, conf)
        if todo and restarted is False:
            raise WorkflowError(
                'nova-compute on %s has not been restarted since the '
                'transition settings were written; run "openstack cpumigrate '
                'prepare %s" again' % (host_name, host_name))
        if todo and restarted is None:
            # The first restart's verification catches a stale nova-compute
            # and stops the run there.
            ctx.progress('%s: cannot tell when nova-compute last started; '
                         'going on (each restarted domain is verified)'
                         % host_name)

        if floor_check is not None:
            allowed = []
            for server, guest in todo:
                # A server we stopped was running before: it starts again.
                why = None if stopped_by_us(server) else floor_check(
                    server, conf.settings, host)
                if why:
                    failures.append('%s: %s' % (server.name or server.id, why))
                    rows[server.id] = (*common.server_row_base(server),
                                       server.status, common.cpu_text(guest),
                                       '', 'refused: %s' % why)
                else:
                    allowed.append((server, guest))
            todo = allowed

        if dry_run:
            for server, guest in todo:
                rows[server.id] = (*common.server_row_base(server),
                                   server.status, common.cpu_text(guest),
                                   conf.settings.describe(),
                                   'would restart (%s)' % method)
            if conf.transitioned:
                ctx.progress('%s: would then restore the original nova.conf '
                             'and restart nova-compute' % host_name)
            return common.fail_if(failures, COLUMNS, common.ordered(servers, rows))

        if todo:
            ctx.approve('restart %d server(s) on %s (%s) so they get the '
                        'transition CPU %s: %s' % (
                            len(todo), host_name, method,
                            conf.settings.describe(),
                            ', '.join(s.name or s.id for s, _ in todo)),
                        dry_run)
        stopped = False
        for server, guest in todo:
            base = (*common.server_row_base(server),)
            if stopped:
                rows[server.id] = (*base, server.status,
                                   common.cpu_text(guest), '',
                                   'not restarted: the run stopped')
                continue
            ctx.progress('%s: restarting %s (%s)' % (host_name,
                                                     server.name, method))
            try:
                server = ctx.cloud.restart_server(server, method,
                                                  ctx.server_timeout)
                after = host.guest_cpu(server.id)
                if not common.runs_transition(after, conf.settings):
                    raise WorkflowError(
                        'its domain runs %s, not the transition CPU %s'
                        % (common.cpu_text(after) or 'an unknown CPU',
                           conf.settings.describe()))
            except common.RECOVERABLE as exc:
                why = common.reason(exc)
                failures.append('%s: %s' % (server.name or server.id, why))
                rows[server.id] = (*base, server.status,
                                   common.cpu_text(guest), '',
                                   'failed: %s' % why)
                stopped = True
                continue
            rows[server.id] = (*base, server.status, common.cpu_text(guest),
                               common.cpu_text(after), 'pinned')

        if server_names and conf.transitioned and not stopped:
            keep_transition |= others_unpinned(ctx, host, servers, conf)
        # Restore even when guest floors refused servers: left in transition,
        # the host would give a refused guest the transition CPU at its next
        # reboot.  After a failed restart, keep it, so a re-run carries on.
        if conf.transitioned and (stopped or keep_transition):
            ctx.progress('%s: keeping the transition settings in nova.conf '
                         'until every ACTIVE server is pinned' % host_name)
        if not stopped and not keep_transition and conf.transitioned:
            ctx.progress('%s: restoring the original nova.conf' % host_name)
            try:
                host.restore_original()
                restart_compute(ctx, host)
            except common.RECOVERABLE as exc:
                failures.append('restoring nova.conf on %s: %s'
                                % (host_name, common.reason(exc)))
        return common.fail_if(failures, COLUMNS, common.ordered(servers, rows))


def others_unpinned(ctx: common.Context, host: host_api.Host,
                    selected: Sequence[Any],
                    conf: host_api.ConfState) -> bool:
    """With --server, are there ACTIVE servers on the host, not selected,
    that do not run the transition CPU yet?  Then nova.conf must keep the
    transition settings so a later pin can do them without a new prepare."""
    chosen = {s.id for s in selected}
    for server in ctx.cloud.servers_on_host(host.name):
        if server.id in chosen or server.status != 'ACTIVE':
            continue
        if not common.runs_transition(host.guest_cpu(server.id),
                                      conf.settings):
            return True
    return False
