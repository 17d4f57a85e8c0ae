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

"""pin: runbook steps 4-7 on the prepared source host.

Restart each ACTIVE server, one at a time, so libvirt rebuilds its domain with
the transition CPU, and verify the domain's ``<cpu>``.  Then put the original
nova.conf back and restart nova-compute: the servers keep the transition CPU
until they are restarted again (finalize, on the destination).

In four steps, each its own function: :func:`plan` (which servers, with the
shared :func:`restart.classify`), :func:`guard` (the host is prepared and
restarted; guest floors), the shared :func:`restart.run`, and
:func:`restore` (nova.conf back, unless servers are left to pin).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import contextlib
import logging
from typing import Any

from osc_cpumigrate import errors
from osc_cpumigrate.choices import DEFAULT_RESTART_METHOD
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import cpuchoice
from osc_cpumigrate.workflow import gate
from osc_cpumigrate.workflow import hostlock
from osc_cpumigrate.workflow import restart
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)


@hostlock.holds_lock
def pin(ctx: common.Context, host_name: str, *,
        servers: Sequence[str] = (), method: str = DEFAULT_RESTART_METHOD,
        dry_run: bool = False, ignore_guest_floor: bool = False,
        destinations: Sequence[str] = ()) -> list[rows.PinRow]:
    """Pin the servers of ``host_name`` (all, or those named).  Pinned
    means the destinations' libvirt accepts the live CPU, and only those
    whose migration one of them would accept are restarted.  Without
    ``destinations``: those prepare recorded in nova.conf's marker."""
    with restart.session(ctx, host_name, servers, method) as (
            host, conf, selected), contextlib.ExitStack() as stack:
        common.finish_pending_restart(ctx, host, conf, dry_run=dry_run)
        # one SSH session per destination, for the judge and the gate
        sessions = {d: host if d == host_name else stack.enter_context(
            ctx.host(d)) for d in known_destinations(ctx, host_name, conf,
                                                     destinations)}
        judge = cpuchoice.live_cpu_judge(sessions) if sessions else None
        goal = goal_of(conf, judge)
        work = plan(ctx, host, selected, conf, goal, judge)
        guard(ctx, host, conf, work)
        if not ignore_guest_floor:
            refuse_floors(ctx, host, conf, work, goal)
        others = [h for d, h in sessions.items() if d != host_name]
        refuse_unmovable(ctx, host, conf, work, goal, opener=lambda: (
            gate.Gate.of(ctx, others, selected) if others else None))
        stopped = restart.run(ctx, host, work, goal, method=method,
                              dry_run=dry_run)
        keep = stopped or any(common.busy(s) for s in selected)
        try:
            extra = restore(ctx, host, conf, work, keep=keep,
                            named=bool(servers), dry_run=dry_run)
        except KeyboardInterrupt as exc:
            raise errors.interrupted(exc, work.rows(), (
                '%s: interrupted while restoring nova.conf and restarting '
                'nova-compute; the next "openstack cpumigrate pin %s" '
                'finishes it' % (host_name, host_name))) from None
        return common.finish(work.rows(), extra=extra)


def known_destinations(ctx: common.Context, host_name: str,
                       conf: host_api.ConfState,
                       given: Sequence[str]) -> tuple[str, ...]:
    """The destinations given, else those prepare recorded (said on
    stderr, so the operator sees which hosts the gate asks)."""
    if given:
        return tuple(dict.fromkeys(given))
    if conf.transitioned and conf.destinations:
        ctx.progress('%s: checking migrations to %s, the destinations '
                     'prepare was given' % (host_name,
                                            ', '.join(conf.destinations)))
    return conf.destinations if conf.transitioned else ()


def goal_of(conf: host_api.ConfState,
            judge: Callable[[host_api.GuestCpu], str] | None = None
            ) -> restart.Goal:
    settings = conf.settings

    def verify(after: host_api.GuestCpu) -> str | None:
        if not common.runs_settings(after, settings):
            return ('its domain runs %s, not the transition CPU %s'
                    % (common.cpu_text(after) or 'an unknown CPU',
                       settings.describe()))
        refused = judge(after) if judge else ''
        return 'its live CPU is refused by %s' % refused if refused else None

    return restart.Goal(
        row_type=rows.PinRow, done=rows.PINNED, already=rows.ALREADY_PINNED,
        would=rows.WOULD_PIN,
        cpu='the transition CPU %s' % settings.describe(), verify=verify,
        expected=rows.Cpu.of_settings(settings))


def plan(ctx: common.Context, host: host_api.Host, servers: Sequence[Any],
         conf: host_api.ConfState, goal: restart.Goal,
         judge: Callable[[host_api.GuestCpu], str] | None = None
         ) -> restart.Plan:
    """Busy servers are refused (restoring nova.conf under a reboot an
    interrupted run left would give it the native CPU again); the others
    are classified."""
    work = restart.Plan(list(servers))
    idle = []
    for server in servers:
        doing = common.busy(server)
        if doing:
            work.settle(restart.row(
                goal, server, host.name, rows.REFUSED,
                'busy: %s; run pin again when it is done' % doing))
        else:
            idle.append(server)
    host_cpu = host.host_cpu()

    def settled(server: Any, guest: host_api.GuestCpu) -> str | None:
        pinned = is_pinned(guest, conf, host_cpu, judge)
        return goal.already if pinned else None

    return restart.classify(ctx, host, idle, goal, settled=settled,
                            plan=work)


def is_pinned(guest: host_api.GuestCpu, conf: host_api.ConfState,
              host_cpu: host_api.HostCpu,
              judge: Callable[[host_api.GuestCpu], str] | None) -> bool:
    """Does the server need no restart?  It runs a transition CPU: the
    prepared host's settings, or (restored host, or destinations known)
    anything but the host's own CPU; and, with destinations, libvirt on
    each of them accepts its live CPU (by comparison: a server on an
    earlier transition CPU they accept is not restarted again)."""
    if conf.transitioned and common.runs_settings(guest, conf.settings):
        transition = True
    elif conf.transitioned and judge is None:
        return False
    else:
        transition = not common.is_native(guest, conf.original, host_cpu)
    return transition and (judge is None or not judge(guest))


def guard(ctx: common.Context, host: host_api.Host,
          conf: host_api.ConfState, work: restart.Plan) -> None:
    """Servers to restart need a prepared host whose nova-compute has
    loaded the transition settings."""
    if not work.todo:
        return
    if not conf.transitioned:
        raise WorkflowError(
            '%s is not prepared: its nova.conf does not hold transition '
            'CPU settings; run "openstack cpumigrate prepare %s" first'
            % (host.name, host.name))
    require_restorable(ctx, host, conf)
    restarted = common.compute_restarted_since_written(host, conf)
    if restarted is False:
        raise WorkflowError(
            'nova-compute on %s has not been restarted since the '
            'transition settings were written; run "openstack cpumigrate '
            'prepare %s" again' % (host.name, host.name))
    if restarted is None:
        # The first restart's verification catches a stale nova-compute
        # and stops the run there.
        ctx.progress('%s: cannot tell when nova-compute last started; '
                     'going on (each restarted domain is verified)'
                     % host.name)


def require_restorable(ctx: common.Context, host: host_api.Host,
                       conf: host_api.ConfState) -> None:
    """Before the first restart: the original nova.conf can be put back
    (the backup, or the lines the marker keeps; the file as cpumigrate
    wrote it; the directory writable)."""
    if conf.problem:
        ctx.progress('%s: %s' % (host.name, conf.problem))
    problem = host.restorable_problem()
    if problem:
        raise WorkflowError(
            'no server on %s was restarted: the original nova.conf could '
            'not be restored afterwards: %s' % (host.name, problem))


def refuse_floors(ctx: common.Context, host: host_api.Host,
                  conf: host_api.ConfState, work: restart.Plan,
                  goal: restart.Goal) -> None:
    """Refuse the servers whose guest needs more than the transition CPU."""
    floor_guard = cpuchoice.floor_guard(ctx)
    work.refuse(goal, host.name, lambda server, _guest: floor_guard(
        server, conf.settings, host))


def refuse_unmovable(ctx: common.Context, host: host_api.Host,
                     conf: host_api.ConfState, work: restart.Plan,
                     goal: restart.Goal, *,
                     opener: Callable[[], gate.Gate | None]) -> None:
    """Refuse, before any restart, the servers Nova would put in ERROR
    on the transition CPU (required CPU traits its model lacks) and those
    no destination would take (the gate).  With no destination known,
    restart nobody: a server whose migration would be refused would be
    restarted for nothing."""
    if not work.todo:
        return
    checker = opener()
    if checker is None:
        raise WorkflowError(
            'no server on %s was restarted: pin needs the hosts migrate '
            'will use, to check that each server\'s migration will be '
            'accepted: give --destination (prepare %s recorded none)'
            % (host.name, host.name))
    cpu_map = gate.read_cpu_map(host)
    models = gate.configured_models(conf.settings, cpu_map)
    cpu_xml = transition_xml(host, conf.settings, cpu_map)
    work.refuse(goal, host.name, lambda server, guest: (
        gate.trait_problem(server, models)
        or unmovable(ctx, checker, server, cpu_xml, guest)))


def transition_xml(host: host_api.Host, settings: host_api.CpuSettings,
                   cpu_map: Any) -> str:
    """The ``<cpu>`` the servers will get, for the destinations'
    comparison."""
    from osc_cpumigrate.cpu import transition

    try:
        return transition.explicit(cpu_map, settings.model or '',
                                   settings.extra_flags).as_xml()
    except ValueError as exc:
        raise WorkflowError('no server on %s was restarted: its transition '
                            'CPU %s: %s' % (host.name, settings.describe(),
                                            exc)) from None


def unmovable(ctx: common.Context, checker: gate.Gate, server: Any,
              cpu_xml: str, guest: host_api.GuestCpu | None) -> str | None:
    """Why no destination would accept the server's migration once it
    runs the transition CPU, or None (warnings go to progress)."""
    verdict = checker.verdict(server, cpu_xml=cpu_xml,
                              machine=guest.machine if guest else None)
    for text in verdict.warnings:
        ctx.progress('%s: %s' % (server.name or server.id, text))
    return None if verdict.accepting else verdict.reason()


def restore(ctx: common.Context, host: host_api.Host,
            conf: host_api.ConfState, work: restart.Plan, *, keep: bool,
            named: bool, dry_run: bool) -> list[str]:
    """Put the original nova.conf back once no server is left to pin; the
    failures that are no server's.

    Restore even when guest floors refused servers: left in transition, the
    host would give a refused guest the transition CPU at its next reboot.
    After a failed restart, or with a busy server, keep it, so a re-run
    carries on; with --server, keep it while other servers need pinning."""
    if not conf.transitioned:
        return []
    if dry_run:
        ctx.progress('%s: would then restore the original nova.conf and '
                     'restart nova-compute' % host.name)
        return []
    if keep or (named and others_unpinned(ctx, host, work.servers, conf)):
        ctx.progress('%s: keeping the transition settings in nova.conf '
                     'until every ACTIVE server is pinned' % host.name)
        return []
    ctx.progress('%s: restoring the original nova.conf' % host.name)
    try:
        host.restore_original()
        common.restart_compute(ctx, host)
    except common.RECOVERABLE as exc:
        return ['restoring nova.conf on %s: %s' % (host.name,
                                                   common.reason(exc))]
    return []


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
        if not common.runs_settings(host.guest_cpu(server.id),
                                    conf.settings):
            return True
    return False
