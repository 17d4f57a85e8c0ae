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

"""check: the read-only pre-flight check.

One :class:`~osc_cpumigrate.workflow.rows.CheckRow` per check with a
verdict (ok / warn / fail) and a reason; any fail makes the verb exit 1, so
a pipeline can gate on it.  A check about one server (its guest floor) names
it in ``Server``; ``Host`` is always a host (``*``: every host).
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from typing import Any

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import cpuchoice
from osc_cpumigrate.workflow.rows import CheckRow

LOG = logging.getLogger(__name__)

OK, WARN, FAIL = 'ok', 'warn', 'fail'


def check(ctx: common.Context, source: str, *,
          destinations: Sequence[str], model: str = 'auto',
          flags: Sequence[str] = ()) -> list[CheckRow]:
    """Every check, one row each; PartialFailure when any fails."""
    if not destinations:
        raise WorkflowError('give at least one --destination')
    found_rows: list[CheckRow] = []
    found_rows += service_rows(ctx, source, destinations)
    found = cpuchoice.survey(ctx, source, destinations, model, flags)
    found_rows += cpu_rows(source, destinations, found)
    servers = ctx.cloud.servers_on_host(source)
    found_rows += capacity_rows(ctx, destinations, servers)
    if found.cpu is not None:
        found_rows += server_rows(ctx, source, destinations, servers, found)
    failures = ['%s %s: %s' % (r.check, r.server or r.host, r.reason)
                for r in found_rows if r.verdict == FAIL]
    if failures:
        for text in failures:
            LOG.error('check failed: %s', text)
        raise PartialFailure('%d of %d checks failed (%s)' % (
            len(failures), len(found_rows), '; '.join(failures)), found_rows)
    return found_rows


def row(check: str, host: str, verdict: str, reason: str,
        server: str = '') -> CheckRow:
    return CheckRow(check=check, host=host, server=server, verdict=verdict,
                    reason=reason)


def service_rows(ctx: common.Context, source: str,
                 destinations: Sequence[str]) -> list[CheckRow]:
    service = ctx.cloud.compute_service(source)
    found = [row('service', source, OK,
                 'source: %s' % common.service_text(service))]
    for dest in dict.fromkeys(destinations):
        service = ctx.cloud.compute_service(dest)
        problem = common.destination_problem(source, service)
        found.append(row('service', dest, FAIL if problem else OK,
                         'the source itself' if dest == source else
                         'destination: %s' % common.service_text(service)))
    return found


def cpu_rows(source: str, destinations: Sequence[str],
             found: cpuchoice.Survey) -> list[CheckRow]:
    from osc_cpumigrate.cpu import levels

    rows = []
    src = found.cpus[source]
    for name, cpu in found.cpus.items():
        rows.append(row('host cpu', name, OK, '%s %s, libvirt %s, QEMU %s' % (
            cpu.vendor, cpu.host_model or cpu.model,
            cpu.libvirt_version or '?', cpu.qemu_version or '?')))
    if found.startup_skipped:
        rows.append(row('startup check', source, WARN, (
            'Nova skips its CPU check at start (%s): only cpumigrate\'s '
            'hypervisor-cpu-compare proves the transition CPU'
            % found.startup_skipped)))
    if found.cpu is None:
        rows.append(row('transition cpu', '*', FAIL, found.error or
                     'no candidate accepted'))
    else:
        cpu = found.cpu
        rows.append(row('transition cpu', '*', OK, cpu.describe()))
        verdict = OK if cpu.level >= 2 else WARN
        rows.append(row('features kept', '*', verdict, '%d of %d common '
                     'features, %s' % (cpu.kept, len(cpu.common),
                                       levels.level_name(cpu.level))))
        for name, result in found.results.items():
            rows.append(row('cpu compare', name,
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
            if a and b and cpuchoice.version_key(a)
            < cpuchoice.version_key(b)]
        rows.append(row('versions', dest, FAIL if older else OK,
                     'older than the source: %s (Nova refuses to live-migrate '
                     'to an older hypervisor)' % ', '.join(older) if older
                     else 'not older than the source'))
        if cpu.vendor != src.vendor:
            rows.append(row('vendor', dest, WARN,
                            vendor_risks(src.vendor, cpu.vendor)))
    return rows


#: What a guest booted on one vendor may have chosen that breaks on the
#: other, by the instruction the 32-bit compatibility mode lacks there.
_COMPAT_ENTRY = {
    'AMD': ('SYSENTER', 'AMD CPUs support only SYSCALL in compatibility '
            'mode'),
    'Intel': ('SYSCALL', 'Intel CPUs support only SYSENTER in '
              'compatibility mode'),
}


def vendor_risks(source: str, destination: str) -> str:
    """The concrete risks of a guest seeing ``destination``'s vendor
    after booting on ``source``'s, and their window."""
    entry = _COMPAT_ENTRY.get(destination)
    sysentry = ('32-bit programs in 64-bit guests whose kernel chose %s at '
                'boot (the 32-bit vDSO) crash with an invalid opcode (%s); '
                % entry) if entry else ''
    return ('from the live migration (migrate) until finalize restarts '
            'them, guests booted on %s run on %s and see its CPU vendor: '
            '%scode paths chosen from CPUID at boot stay %s-specific '
            '(kernel speculative-execution mitigations and errata '
            'workarounds, vendor MSR drivers such as intel_pstate or '
            'amd-pstate, perf counters, math libraries dispatching on the '
            'vendor) and vendor-keyed licences may object: finalize right '
            'after migrate (run --finalize now) keeps the window short'
            % (source, destination, sysentry, source))


def server_rows(ctx: common.Context, source: str,
                destinations: Sequence[str], servers: Sequence[Any],
                found: cpuchoice.Survey) -> list[CheckRow]:
    """Per server: its guest floor, its required CPU traits against the
    transition model, and the gate (will a destination accept it)."""
    import contextlib

    from osc_cpumigrate.workflow import gate

    models = {found.cpu.model: found.cpu.model_features}
    others = [d for d in destinations if d != source]
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(ctx.host(source))
        rows = floor_rows(ctx, host, servers, found)
        checker = gate.Gate.open(ctx, stack, others, servers)
        for server in servers:
            if server.status not in ('ACTIVE', 'SHUTOFF'):
                continue
            label = server.name or server.id
            why = gate.trait_problem(server, models) if (
                server.status == 'ACTIVE') else None
            if why:
                rows.append(row('cpu traits', source, FAIL, '%s: %s' % (
                    label, why), server=server.id))
            rows += gate_rows(checker, host, server, found.cpu.as_xml())
    return rows


def gate_rows(checker: Any, host: host_api.Host, server: Any,
              cpu_xml: str) -> list[CheckRow]:
    """The gate's verdict on one server (a live migration with the
    transition CPU when ACTIVE, a cold one when SHUTOFF)."""
    label = server.name or server.id
    live = server.status == 'ACTIVE'
    machine = None
    if live:
        try:
            machine = host.guest_cpu(server.id).machine
        except common.RECOVERABLE:
            pass                # no domain: the guest floor row says so
    verdict = checker.verdict(server, cpu_xml=cpu_xml if live else None,
                              machine=machine, live=live)
    rows = [row('migration', host.name, WARN, '%s: %s' % (label, text),
                server=server.id) for text in verdict.warnings]
    if not verdict.accepting:
        rows.append(row('migration', host.name, FAIL, '%s: %s' % (
            label, verdict.reason()), server=server.id))
    return rows


def capacity_rows(ctx: common.Context, destinations: Sequence[str],
                  servers: Sequence[Any]) -> list[CheckRow]:
    moving = [s for s in servers
              if s.status in ('ACTIVE', 'SHUTOFF', 'MIGRATING',
                              'VERIFY_RESIZE')]
    usable = list(dict.fromkeys(destinations))
    free = {d: ctx.cloud.capacity(d) for d in usable}
    before = dict(free)
    homeless = [s.name or s.id for s in moving
                if not common.choose_destination(free, s)]
    rows = []
    for dest in usable:
        cap, left = before[dest], free[dest]
        rows.append(row('capacity', dest, OK,
                     'free %d vCPU, %d MB RAM, %d GB disk; %d vCPU, %d MB, '
                     '%d GB left after the move' % (
                         cap.vcpus, cap.ram_mb, cap.disk_gb, left.vcpus,
                         left.ram_mb, left.disk_gb)))
    if homeless:
        rows.append(row('capacity', '*', FAIL, 'no room for %d of %d servers: '
                     '%s' % (len(homeless), len(moving),
                             ', '.join(homeless))))
    return rows


def floor_rows(ctx: common.Context, host: host_api.Host,
               servers: Sequence[Any],
               found: cpuchoice.Survey) -> list[CheckRow]:
    """Servers whose guest needs more than the transition CPU."""
    settings = host_api.CpuSettings('custom', (found.cpu.model,),
                                    tuple(found.cpu.extra_flags))
    floor_guard = cpuchoice.floor_guard(ctx, found.cpu.features)
    rows = []
    for server in servers:
        if server.status != 'ACTIVE':
            continue
        why = floor_guard(server, settings, host)
        if why:
            rows.append(row('guest floor', host.name, FAIL, '%s: %s' % (
                server.name or server.id, why), server=server.id))
    return rows
