"""check: the read-only pre-flight check.

One row per check with a verdict (ok / warn / fail) and a reason; any fail
makes the verb exit 1, so a pipeline can gate on it.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import transition

LOG = logging.getLogger(__name__)

COLUMNS = ('Check', 'Host', 'Verdict', 'Reason')
OK, WARN, FAIL = 'ok', 'warn', 'fail'


def check(ctx: common.Context, source: str, destinations: Sequence[str],
          model: str, flags: Sequence[str],
          ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    if not destinations:
        raise WorkflowError('give at least one --destination')
    rows: list[tuple[str, str, str, str]] = []
    rows += service_rows(ctx, source, destinations)
    found = transition.evaluate(ctx, source, destinations, model, flags)
    rows += cpu_rows(source, destinations, found)
    servers = ctx.cloud.servers_on_host(source)
    rows += capacity_rows(ctx, destinations, servers)
    if found.cpu is not None:
        rows += floor_rows(ctx, source, servers, found)
    failures = ['%s %s: %s' % (c, h, r) for c, h, v, r in rows if v == FAIL]
    return common.fail_if(
        ['%d check(s) failed (%s)' % (len(failures), '; '.join(failures))]
        if failures else [], COLUMNS, rows)


def service_rows(ctx: common.Context, source: str,
                 destinations: Sequence[str]) -> list[tuple[str, ...]]:
    service = ctx.cloud.compute_service(source)
    rows = [('service', source, OK, 'source: %s, %s' % (service.status,
                                                        service.state))]
    for dest in dict.fromkeys(destinations):
        if dest == source:
            rows.append(('service', dest, FAIL, 'the source itself'))
            continue
        service = ctx.cloud.compute_service(dest)
        verdict = OK if (service.status == 'enabled'
                         and service.state == 'up') else FAIL
        rows.append(('service', dest, verdict,
                     'destination: %s, %s' % (service.status, service.state)))
    return rows


def cpu_rows(source: str, destinations: Sequence[str],
             found: transition.Evaluation) -> list[tuple[str, ...]]:
    from osc_cpumigrate.cpu import levels

    rows = []
    src = found.cpus[source]
    for name, cpu in found.cpus.items():
        rows.append(('host cpu', name, OK, '%s %s, libvirt %s, QEMU %s' % (
            cpu.vendor, cpu.host_model or cpu.model,
            cpu.libvirt_version or '?', cpu.qemu_version or '?')))
    if found.cpu is None:
        rows.append(('transition cpu', '*', FAIL, found.error or
                     'no candidate accepted'))
    else:
        cpu = found.cpu
        rows.append(('transition cpu', '*', OK, cpu.describe()))
        verdict = OK if cpu.level >= 2 else WARN
        rows.append(('features kept', '*', verdict, '%d of %d common '
                     'features, %s' % (cpu.kept, len(cpu.common),
                                       levels.level_name(cpu.level))))
        for name, result in found.results.items():
            rows.append(('cpu compare', name,
                         OK if result.compatible else FAIL,
                         '%s%s' % (result.result, ': ' + result.message
                                   if not result.compatible else '')))
    for dest in dict.fromkeys(destinations):
        cpu = found.cpus.get(dest)
        if cpu is None or dest == source:
            continue
        older = [what for what, a, b in (
            ('libvirt', cpu.libvirt_version, src.libvirt_version),
            ('QEMU', cpu.qemu_version, src.qemu_version))
            if a and b and transition.version_key(a)
            < transition.version_key(b)]
        rows.append(('versions', dest, FAIL if older else OK,
                     'older than the source: %s (Nova refuses to live-migrate '
                     'to an older hypervisor)' % ', '.join(older) if older
                     else 'not older than the source'))
        if cpu.vendor != src.vendor:
            rows.append(('vendor', dest, WARN,
                         'guests see the CPU vendor change from %s to %s '
                         'during the live migration until finalize '
                         'restarts them' % (src.vendor, cpu.vendor)))
    return rows


def capacity_rows(ctx: common.Context, destinations: Sequence[str],
                  servers: Sequence[Any]) -> list[tuple[str, ...]]:
    moving = [s for s in servers
              if s.status in ('ACTIVE', 'SHUTOFF', 'MIGRATING',
                              'VERIFY_RESIZE')]
    usable = list(dict.fromkeys(destinations))
    free = {d: ctx.cloud.capacity(d) for d in usable}
    before = dict(free)
    homeless = [s.name or s.id for s in moving
                if not migrate.choose_destination(free, s)]
    rows = []
    for dest in usable:
        cap, left = before[dest], free[dest]
        rows.append(('capacity', dest, OK,
                     'free %d vCPU, %d MB RAM, %d GB disk; %d vCPU, %d MB, '
                     '%d GB left after the move' % (
                         cap.vcpus, cap.ram_mb, cap.disk_gb, left.vcpus,
                         left.ram_mb, left.disk_gb)))
    if homeless:
        rows.append(('capacity', '*', FAIL, 'no room for %d of %d servers: '
                     '%s' % (len(homeless), len(moving),
                             ', '.join(homeless))))
    return rows


def floor_rows(ctx: common.Context, source: str, servers: Sequence[Any],
               found: transition.Evaluation) -> list[tuple[str, ...]]:
    """Servers whose guest needs more than the transition CPU."""
    settings = host_api.CpuSettings('custom', (found.cpu.model,),
                                    tuple(found.cpu.extra_flags))
    check_floor = transition.floor_check(ctx, found.cpu.features)
    rows = []
    with ctx.host(source) as host:
        for server in servers:
            if server.status != 'ACTIVE':
                continue
            why = check_floor(server, settings, host)
            if why:
                rows.append(('guest floor', server.name or server.id, FAIL,
                             why))
    return rows
