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

"""What several verbs share: the context they run in, how a guest's CPU is
read against its host, the compute service, destinations, and how a verb
ends.

A verb module (check, prepare, pin, migrate, finalize, status, host_show)
imports this module, never another verb's: what two verbs both need lives
here (or in ``restart`` for the restart loop pin and finalize share).
Nothing here keeps state between runs: each verb works out where things
stand from the cloud (Nova) and the hosts (nova.conf, libvirt domains).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc

from osc_cpumigrate import audit as audit_log
from osc_cpumigrate.choices import RESTART_METHODS
from osc_cpumigrate.cloud import Cloud
from osc_cpumigrate.cloud import flavor_needs
from osc_cpumigrate.cloud import unanswered
from osc_cpumigrate.errors import describe
from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import hostcheck
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)

#: What one server's step may fail with without ending the verb at once:
#: the verb records the failure in that server's row and stops cleanly.
RECOVERABLE = (WorkflowError, host_api.HostError, sdk_exc.SDKException,
               ks_exc.ClientException)
#: Statuses in which a server is in the middle of something.
BUSY = ('BUILD', 'REBOOT', 'HARD_REBOOT', 'MIGRATING', 'RESIZE',
        'VERIFY_RESIZE', 'REVERT_RESIZE', 'REBUILD', 'PASSWORD')


def reason(exc: BaseException) -> str:
    """One line for a failed step's row."""
    return describe(exc)


def send(ctx: Context, server: Any, action: Callable[[], Any], *,
         what: str, then: str) -> None:
    """Send an action (stop, start, a migration).  One that got no answer
    (a timeout, a dropped connection, 502/504) may have happened: it is
    never sent again here; progress says so and the caller's wait
    decides.  Any other error is raised."""
    try:
        action()
    except Exception as exc:
        if not unanswered(exc):
            raise
        ctx.progress('%s: no answer to the %s (%s): %s'
                     % (server.name, what, reason(exc), then))


def busy(server: Any) -> str | None:
    """'HARD_REBOOT (task rebooting_hard)' when the server is mid-action."""
    if server.status in BUSY or server.task_state:
        return '%s%s' % (server.status, ' (task %s)' % server.task_state
                         if server.task_state else '')
    return None


def arrived_live(cloud: Cloud, host_name: str) -> set[str]:
    """Servers whose last completed live migration ended on this host."""
    last: dict[str, Any] = {}
    for record in cloud.host_migrations(host_name, 'live-migration'):
        last[record.server_id] = record       # oldest first: the last wins
    return {sid for sid, rec in last.items() if rec.dest_compute == host_name}


@dataclasses.dataclass
class Context:
    """What a verb needs besides its own arguments."""

    cloud: Cloud
    host_options: host_api.HostOptions
    progress: Callable[[str], None] = LOG.info
    confirm: Callable[[str], bool] = lambda question: False
    #: Builds a Host; None: the real, SSH-backed one.
    open_host: Callable[[str, host_api.HostOptions], host_api.Host] | None = (
        None)
    service_timeout: float = 180.0
    server_timeout: float = 600.0
    #: The audit trail of the run's changes (audit_log.NULL: none).
    audit: audit_log.Recorder = audit_log.NULL
    #: --break-lock: take over a stale host lock (workflow.hostlock).
    break_lock: bool = False
    #: Hosts proved to be the machine Nova means (workflow.hostcheck).
    verified: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        # The cloud gateway records its changes in the same trail.
        if self.cloud.audit is audit_log.NULL:
            self.cloud.audit = self.audit

    @contextlib.contextmanager
    def host(self, name: str) -> Iterator[host_api.Host]:
        """An SSH session to ``name`` for the duration of a verb.

        Nova must know the host before SSH goes anywhere, and the machine
        reached must prove it is that host (once per run and host)."""
        self.cloud.compute_service(name)
        opener = self.open_host or host_api.open_host
        host = opener(name, self.host_options)
        try:
            if name not in self.verified:
                hostcheck.verify(self.cloud, host)
                self.verified.add(name)
            yield (host if self.audit.path is None
                   else audit_log.AuditedHost(host, self.audit))
        finally:
            host.close()

    def approve(self, what: str) -> None:
        """Ask before restarting customers' servers (never in a dry run:
        the caller returns its rows before asking)."""
        if not self.confirm(what):
            raise WorkflowError('not confirmed: %s; nothing was changed '
                                '(--auto-approve skips the question)' % what)


def is_native(guest: host_api.GuestCpu, original: host_api.CpuSettings,
              host_cpu: host_api.HostCpu | None) -> bool:
    """Does the guest run with the CPU its host gives by its own config
    (finalized)?  By mode, vendor and names as Nova compares them, so a
    host-model renamed by a microcode update still counts
    (:func:`osc_cpumigrate.cpu.guest.runs_own_cpu`)."""
    from osc_cpumigrate.cpu import guest as guest_cpu

    return guest_cpu.runs_own_cpu(guest, original, host_cpu)


def runs_settings(guest: host_api.GuestCpu,
                  settings: host_api.CpuSettings) -> bool:
    """Does the guest run exactly the CPU ``settings`` give (the transition
    CPU of a prepared host's nova.conf), names compared as Nova does?"""
    from osc_cpumigrate.cpu import guest as guest_cpu

    return guest_cpu.runs_settings(guest, settings)


def require_method(method: str) -> None:
    if method not in RESTART_METHODS:
        raise WorkflowError('unknown restart method %r (choose from %s)'
                            % (method, ', '.join(RESTART_METHODS)))


def compute_restarted_since_written(
        host: host_api.Host, conf: host_api.ConfState) -> bool | None:
    """Has nova-compute started after the transition was written?  None when
    the host cannot tell (then the caller must assume it has not)."""
    started = host.compute_started_at()
    if started is None or conf.changed_at is None:
        return None
    return started >= conf.changed_at


def restart_pending(host: host_api.Host, conf: host_api.ConfState) -> bool:
    """Was the original nova.conf restored after nova-compute last started
    (the running nova-compute still has the transition settings)?  Not
    when the host cannot tell when nova-compute started."""
    if conf.transitioned:
        return False
    restored = host.restored_at()
    started = host.compute_started_at()
    return restored is not None and started is not None and (
        started < restored)


def conf_state(host: host_api.Host, conf: host_api.ConfState) -> str:
    """``transition``, ``restart pending`` or ``normal``: how status and
    host show name the state of a host's nova.conf."""
    if conf.transitioned:
        return 'transition'
    return 'restart pending' if restart_pending(host, conf) else 'normal'


def finish_pending_restart(ctx: Context, host: host_api.Host,
                           conf: host_api.ConfState, *,
                           dry_run: bool = False) -> None:
    """Restart nova-compute if an earlier run restored nova.conf but did
    not get nova-compute restarted with it."""
    if not restart_pending(host, conf):
        return
    ctx.progress('%s: restart pending: nova.conf was restored after '
                 'nova-compute last started; %s' % (
                     host.name, 'would restart nova-compute' if dry_run
                     else 'restarting nova-compute'))
    if not dry_run:
        restart_compute(ctx, host)


def compute_down(ctx: Context, host_name: str) -> str | None:
    """Why no guest may be restarted on the host now: its nova-compute is
    down or its heartbeat stale (Nova's own verdict, from
    ``service_down_time``); a power-on there would hang.  None: up."""
    service = ctx.cloud.compute_service(host_name)
    if service.state == 'up':
        return None
    return ('nova-compute on %s is %s (last heartbeat %s): no server is '
            'restarted while nothing would execute it; start nova-compute '
            'and run again' % (host_name, service.state or 'not reporting',
                               service.updated_at or 'never'))


def cpu_text(guest: host_api.GuestCpu | None) -> str:
    """A guest's CPU in full for a message: ``kvm64 +pcid``."""
    cpu = rows.Cpu.of_guest(guest)
    return cpu.full() if cpu else ''


def service_text(service: Any) -> str:
    """``enabled, up`` or ``disabled, up (reason)``: for progress and
    check's reasons (rows have a column each)."""
    text = '%s, %s' % (service.status, service.state)
    if service.status == 'disabled' and service.disabled_reason:
        text += ' (%s)' % service.disabled_reason
    return text


def restart_compute(ctx: Context, host: host_api.Host) -> Any:
    """Restart nova-compute and wait for a heartbeat newer than the restart."""
    ctx.progress('%s: restarting nova-compute' % host.name)
    host.restart_nova_compute()
    baseline = ctx.cloud.compute_service(host.name).updated_at
    service = ctx.cloud.wait_service_up(host.name, baseline,
                                        ctx.service_timeout)
    ctx.progress('%s: nova-compute is up again' % host.name)
    return service


def destination_problem(source: str, service: Any) -> str | None:
    """Why the host of compute ``service`` cannot take servers from
    ``source`` (it is the source, disabled or down), or None: the rule check
    and migrate both apply."""
    if service.host == source:
        return 'the source itself'
    if service.status != 'enabled':
        return 'disabled%s' % (' (%s)' % service.disabled_reason
                               if service.disabled_reason else '')
    if service.state != 'up':
        return 'down'
    return None


def choose_destination(free: dict[str, Any], server: Any,
                       among: Sequence[str] | None = None) -> str:
    """The destination with the most free RAM that fits the server (of
    ``among`` only, in its order, when given); its capacity is booked so
    the next server sees what is left."""
    needs = flavor_needs(server)
    names = list(free) if among is None else [d for d in among if d in free]
    fitting = [d for d in names if free[d].fits(*needs)]
    if not fitting:
        return ''
    best = max(fitting, key=lambda d: (free[d].ram_mb, free[d].vcpus))
    free[best] = free[best].minus(*needs)
    return best


def finish(results: list[Any], *, extra: Sequence[str] = ()) -> list[Any]:
    """Return the rows of a verb, or raise PartialFailure carrying them.

    As OSC's ``server delete`` does: every failed row is logged, and one
    error says how many of how many failed and why (``extra``: failures
    that are no server's, e.g. restoring nova.conf)."""
    failed = [r for r in results if r.result in rows.FAILURES]
    if not failed and not extra:
        return results
    for row in failed:
        LOG.error('%s (%s): %s: %s', row.label, row.id, row.result,
                  row.reason)
    parts = ['%s: %s' % (r.label, r.reason) for r in failed]
    message = '%d of %d servers failed' % (len(failed), len(results))
    if parts:
        message += ' (%s)' % '; '.join(parts)
    if extra:
        message += '; ' + '; '.join(extra)
    raise PartialFailure(message, results)
