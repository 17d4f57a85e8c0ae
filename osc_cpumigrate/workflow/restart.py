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

"""The restart loop pin and finalize share.

Both verbs do one thing to different ends: restart servers one at a time so
libvirt rebuilds each domain from what nova-compute loaded, then read the
domain back to prove it got the CPU wanted (pin: the transition CPU;
finalize: the host's own).  So the loop is written once, and a verb gives
it a :class:`Goal` (what a good domain looks like, what the rows say) and
its own guards:

1. :func:`classify` sorts the servers: ACTIVE ones the verb still has to
   restart, ones already as wanted, ones left alone (not ACTIVE), and ones
   an interrupted ``stop-start`` left stopped (a restart is the start that
   was missing);
2. the verb applies its guards (pin: prepared host, guest floors);
3. :func:`run` asks for confirmation, restarts one server at a time,
   verifies its domain, writes a row per server and stops at the first
   failure (the rest are ``not-attempted``).

The stop-start bookkeeping lives here too: before a stop, the server gets
the metadata key :data:`STOPPED_KEY`, so that if the run dies before the
start, the next run knows cpumigrate stopped it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
from typing import Any

from openstack import exceptions as sdk_exc

from osc_cpumigrate import errors
from osc_cpumigrate.choices import POWER_CUT_METHOD
from osc_cpumigrate.errors import http_message
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import rows
from osc_cpumigrate.workflow import stopkey

LOG = logging.getLogger(__name__)

STOPPED_KEY = stopkey.STOPPED_KEY
#: SHUTOFF and carrying the key: maybe left stopped by cpumigrate (the
#: instance actions decide: :func:`stopkey.proof`).
stopped_by_us = stopkey.candidate


@contextlib.contextmanager
def session(ctx: common.Context, host_name: str, servers: Sequence[str],
            method: str) -> Iterator[tuple[host_api.Host, host_api.ConfState,
                                           list[Any]]]:
    """What pin and finalize start with: the method checked, the host known
    to Nova, the servers chosen (all, or those named), an SSH session to
    the host and its nova.conf."""
    common.require_method(method)
    ctx.cloud.compute_service(host_name)
    selected = ctx.cloud.selected_servers(host_name, servers)
    with ctx.host(host_name) as host:
        yield host, host.nova_conf(), selected


@dataclasses.dataclass(frozen=True)
class Goal:
    """What a verb wants from restarting a server."""

    row_type: type                 # rows.PinRow | rows.FinalizeRow
    done: str                      # rows.PINNED
    already: str                   # rows.ALREADY_PINNED
    would: str                     # rows.WOULD_PIN
    cpu: str                       # for the question: "the transition CPU"
    #: Why a restarted domain is not as wanted, or None.
    verify: Callable[[host_api.GuestCpu], str | None]
    #: The CPU After of a dry run's rows.
    expected: rows.Cpu | None = None
    #: The verb, for the command a message tells the operator to run.
    verb: str = 'pin'


@dataclasses.dataclass
class Plan:
    """The servers of one run: rows for those settled, and the restarts."""

    servers: list[Any]
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    todo: list[tuple[Any, host_api.GuestCpu | None]] = dataclasses.field(
        default_factory=list)

    def settle(self, row: Any) -> None:
        self.results[row.id] = row

    def rows(self) -> list[Any]:
        """One row per server, in the order of the servers."""
        return [self.results[s.id] for s in self.servers
                if s.id in self.results]

    def refuse(self, goal: Goal, host: str,
               why: Callable[[Any, host_api.GuestCpu | None], str | None]
               ) -> None:
        """Settle as refused the servers to restart for which ``why``
        gives a reason; a server an interrupted stop-start left stopped
        was running before and starts again, unasked."""
        allowed = []
        for server, guest in self.todo:
            reason = None if stopped_by_us(server) else why(server, guest)
            if reason:
                self.settle(row(goal, server, host, rows.REFUSED, reason,
                                before=guest))
            else:
                allowed.append((server, guest))
        self.todo = allowed


def row(goal: Goal, server: Any, host: str, result: str, reason: str = '',
        before: host_api.GuestCpu | None = None,
        after: rows.Cpu | None = None) -> Any:
    return goal.row_type(
        id=server.id, name=server.name or '', host=host,
        status=server.status, result=result, reason=reason,
        cpu_before=rows.Cpu.of_guest(before), cpu_after=after)


def classify(ctx: common.Context, host: host_api.Host,
             servers: Sequence[Any], goal: Goal, *,
             settled: Callable[[Any, host_api.GuestCpu], str | None],
             plan: Plan | None = None) -> Plan:
    """Sort the servers into rows and restarts.

    ``settled(server, guest)`` says whether the domain already is as the
    verb wants (``goal.already``), or why the verb leaves it alone (a
    ``skipped`` reason), or None: restart it.  A SHUTOFF server is started
    only if cpumigrate provably stopped it (:func:`stopkey.proof`)."""
    plan = plan or Plan(list(servers))
    for server in servers:
        if stopkey.candidate(server):
            why = stopkey.proof(ctx, server)
            if why is None:
                plan.todo.append((server, None))
            else:
                plan.settle(row(goal, server, host.name, rows.SKIPPED,
                                'SHUTOFF, not started again: %s' % why))
            continue
        stopkey.tidy(ctx, server)
        if server.status != 'ACTIVE':
            plan.settle(row(goal, server, host.name, rows.SKIPPED,
                            'status %s' % server.status))
            continue
        try:
            guest = host.guest_cpu(server.id)
        except host_api.HostError as exc:    # this server's problem only
            plan.settle(row(goal, server, host.name, rows.FAILED,
                            common.reason(exc)))
            continue
        why = settled(server, guest)
        if why == goal.already:
            plan.settle(row(goal, server, host.name, goal.already,
                            before=guest, after=rows.Cpu.of_guest(guest)))
        elif why:
            plan.settle(row(goal, server, host.name, rows.SKIPPED, why,
                            before=guest))
        else:
            plan.todo.append((server, guest))
    return plan


def run(ctx: common.Context, host: host_api.Host, plan: Plan, goal: Goal, *,
        method: str, dry_run: bool) -> bool:
    """Restart the planned servers one at a time; True if the run stopped
    at a failure."""
    if dry_run:
        for server, guest in plan.todo:
            plan.settle(row(goal, server, host.name, goal.would,
                            'would restart (%s)' % method, before=guest,
                            after=goal.expected))
        return False
    if plan.todo:
        ctx.approve(question(host, plan, goal, method))
    stopped = False
    for server, guest in plan.todo:
        if stopped:
            plan.settle(row(goal, server, host.name, rows.NOT_ATTEMPTED,
                            'the run stopped at an earlier failure',
                            before=guest))
            continue
        try:
            down = common.compute_down(ctx, host.name)
            plan.settle(row(goal, server, host.name, rows.FAILED, down,
                            before=guest) if down else restart_one(
                ctx, host, server, guest, goal, method=method))
        except KeyboardInterrupt as exc:
            raise interrupted(exc, host, plan, goal, server,
                              method=method) from None
        stopped = plan.results[server.id].result == rows.FAILED
    return stopped


def interrupted(exc: KeyboardInterrupt, host: host_api.Host, plan: Plan,
                goal: Goal, server: Any, *,
                method: str) -> KeyboardInterrupt:
    """SIGINT/SIGTERM while restarting ``server``: its row says what Nova
    may still be doing and what to run; the rest are not attempted."""
    if method == POWER_CUT_METHOD:
        doing = ('interrupted during its hard reboot: Nova finishes it; '
                 'check with "openstack server show %s"' % server.id)
    else:
        doing = ('interrupted while cpumigrate stopped and started it: '
                 'Nova finishes the action under way; if it is left '
                 'SHUTOFF, the next "openstack cpumigrate %s %s" starts it '
                 '(or "openstack server start %s")'
                 % (goal.verb, host.name, server.id))
    guest = {s.id: g for s, g in plan.todo}.get(server.id)
    plan.settle(row(goal, server, host.name, rows.INTERRUPTED, doing,
                    before=guest))
    for other, guest in plan.todo:
        if other.id not in plan.results:
            plan.settle(row(goal, other, host.name, rows.NOT_ATTEMPTED,
                            'the run was interrupted', before=guest))
    return errors.interrupted(exc, plan.rows(), '%s (%s): %s' % (
        server.name, server.id, doing))


def question(host: host_api.Host, plan: Plan, goal: Goal,
             method: str) -> str:
    """What the operator confirms; a hard reboot says it cuts the power."""
    how = method
    if method == POWER_CUT_METHOD:
        how = ('hard-reboot: this CUTS THE POWER of each guest, writes not '
               'yet on disk are lost; stop-start shuts them down cleanly')
    return 'restart %d server(s) on %s (%s) so they get %s: %s' % (
        len(plan.todo), host.name, how, goal.cpu,
        ', '.join(s.name or s.id for s, _ in plan.todo))


def restart_one(ctx: common.Context, host: host_api.Host, server: Any,
                guest: host_api.GuestCpu | None, goal: Goal, *,
                method: str) -> Any:
    """Restart one server and verify its domain; its row."""
    ctx.progress('%s: restarting %s (%s)' % (host.name, server.name, method))
    try:
        server = restart_server(ctx, server, method)
        after = host.guest_cpu(server.id)
        wrong = goal.verify(after)
        if wrong:
            raise WorkflowError(wrong)
    except common.RECOVERABLE as exc:
        return row(goal, server, host.name, rows.FAILED, common.reason(exc),
                   before=guest)
    return row(goal, server, host.name, goal.done, before=guest,
               after=rows.Cpu.of_guest(after))


def restart_server(ctx: common.Context, server: Any, method: str) -> Any:
    """Restart so the hypervisor rebuilds the domain from its nova.conf:
    stop then start (the runbook's steps 4-5; Nova's stop shuts the guest
    down cleanly), or one hard reboot (a power cut).

    Before a stop, the server gets the metadata key ``STOPPED_KEY``, so that
    if the run dies before the start, the next run knows this server was
    stopped by cpumigrate: for such a server, a restart is the start that
    was missing.  A stop that fails clears the key again."""
    cloud, timeout = ctx.cloud, ctx.server_timeout
    if stopkey.candidate(server):
        return start_stopped(ctx, server)
    try:
        if method == POWER_CUT_METHOD:
            cloud.reboot(server)
            return cloud.wait_for_server(server, 'ACTIVE', timeout)
        stopkey.mark(ctx, server)
        stop(ctx, server)
    except sdk_exc.NotFoundException:
        raise WorkflowError(gone(server, method)) from None
    except sdk_exc.HttpException as exc:
        raise WorkflowError('Nova refused the %s: %s'
                            % (method, http_message(exc))) from None
    return start_stopped(ctx, server)


def gone(server: Any, doing: str) -> str:
    """A 404 in the middle of a restart: the owner deleted the server."""
    return ('server %s was deleted during the %s (HTTP 404: no such '
            'server any more)' % (server.id, doing))


def stop(ctx: common.Context, server: Any) -> None:
    """Stop a marked server and wait for SHUTOFF; if the stop fails (Nova
    refuses it, or the server ends anywhere but SHUTOFF), the key goes.
    A stop that got no answer may have happened: the wait decides (and
    the key stays while it may)."""
    cloud = ctx.cloud
    try:
        common.send(ctx, server, lambda: cloud.stop(server), what='stop',
                    then='waiting to see whether Nova stops it')
        cloud.wait_for_server(server, 'SHUTOFF', ctx.server_timeout)
    except (sdk_exc.HttpException, WorkflowError):
        found = cloud.get_server(server)
        if found.status != 'SHUTOFF' and not found.task_state:
            stopkey.clear(ctx, found, 'the stop failed')
        raise


def start_stopped(ctx: common.Context, server: Any) -> Any:
    """Start a server cpumigrate stopped, once more if the first start
    fails; the error names it as stopped if it still does not start.  A
    start whose wait ran out but which got the server ACTIVE succeeded.
    A start that got no answer is not sent again before the wait has
    shown that it did not happen."""
    cloud = ctx.cloud
    problem = ''
    for _attempt in range(2):
        try:
            found = cloud.get_server(server)
            if found.status != 'ACTIVE' and found.task_state != 'powering-on':
                send_start(ctx, server)
            server = cloud.wait_for_server(server, 'ACTIVE',
                                           ctx.server_timeout)
        except sdk_exc.NotFoundException:
            raise WorkflowError(gone(server, 'start')) from None
        except sdk_exc.HttpException as exc:
            problem = http_message(exc)
        except WorkflowError as exc:
            problem = str(exc)
        found = cloud.get_server(server)
        if found.status == 'ACTIVE' and not found.task_state:
            stopkey.clear(ctx, found, 'started again')
            return found
        LOG.warning('starting %s again after: %s', server.id, problem)
    raise WorkflowError(
        'server %s was stopped by cpumigrate and did not start again '
        '(%s): start it with "openstack server start %s", or run the '
        'verb again' % (server.id, problem, server.id))


def send_start(ctx: common.Context, server: Any) -> None:
    """The start action; one that got no answer is waited on as if sent
    (the wait for ACTIVE that follows decides)."""
    common.send(ctx, server, lambda: ctx.cloud.start(server), what='start',
                then='waiting to see whether Nova starts it')
