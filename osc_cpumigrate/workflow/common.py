"""What every verb shares: the context it runs in and how a guest's CPU is
read against its host.

Nothing here keeps state between runs: each verb works out where things stand
from the cloud (Nova) and the hosts (nova.conf, libvirt domains).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Callable, Iterator, Sequence

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc

from osc_cpumigrate.choices import RESTART_METHODS
from osc_cpumigrate.cloud import Cloud
from osc_cpumigrate.errors import http_message
from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api

LOG = logging.getLogger(__name__)

#: Modes in which libvirt gives the guest the host's own CPU.
NATIVE_MODES = ('host-model', 'host-passthrough', 'maximum')
#: Nova's default ``[libvirt] cpu_mode`` for KVM.
DEFAULT_CPU_MODE = 'host-model'
#: What one server's step may fail with without ending the verb at once:
#: the verb records the failure in that server's row and stops cleanly.
RECOVERABLE = (WorkflowError, host_api.HostError, sdk_exc.SDKException,
               ks_exc.ClientException)
#: Statuses in which a server is in the middle of something.
BUSY = ('BUILD', 'REBOOT', 'HARD_REBOOT', 'MIGRATING', 'RESIZE',
        'VERIFY_RESIZE', 'REVERT_RESIZE', 'REBUILD', 'PASSWORD')


def reason(exc: BaseException) -> str:
    """One line for a failed step's row."""
    if isinstance(exc, sdk_exc.HttpException):
        return http_message(exc)
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


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

    @contextlib.contextmanager
    def host(self, name: str) -> Iterator[host_api.Host]:
        """An SSH session to ``name`` for the duration of a verb."""
        opener = self.open_host or host_api.open_host
        host = opener(name, self.host_options)
        try:
            yield host
        finally:
            host.close()

    def approve(self, what: str, dry_run: bool) -> None:
        """Ask before restarting customers' servers (unless dry run)."""
        if dry_run:
            return
        if not self.confirm(what):
            raise WorkflowError('not confirmed: %s; nothing was changed '
                                '(--auto-approve skips the question)' % what)


def is_native(guest: host_api.GuestCpu, original: host_api.CpuSettings,
              host_cpu: host_api.HostCpu | None) -> bool:
    """Does the guest run with the CPU its host gives by its own config?

    A live domain defined with host-model shows the expanded model (the
    host-model name) in ``virsh dumpxml``; one defined with a custom model
    shows that model.  Anything else is a transition CPU.
    """
    if guest.mode in NATIVE_MODES:
        return True
    mode = original.mode or DEFAULT_CPU_MODE
    if mode == 'custom':
        return guest.model in original.models
    if mode == 'host-model' and host_cpu is not None:
        return guest.model == host_cpu.host_model
    return False


def runs_transition(guest: host_api.GuestCpu,
                    settings: host_api.CpuSettings) -> bool:
    """Does the guest run exactly the transition CPU of ``settings``?"""
    if guest.mode not in (None, 'custom') or guest.model != settings.model:
        return False
    wanted = {f.lstrip('+') for f in settings.extra_flags
              if not f.startswith('-')}
    return wanted <= guest.required_features()


def check_restart_method(method: str) -> None:
    if method not in RESTART_METHODS:
        raise WorkflowError('unknown restart method %r (choose from %s)'
                            % (method, ', '.join(RESTART_METHODS)))


def compute_restarted_since_transition(host: host_api.Host,
                                       conf: host_api.ConfState) -> bool | None:
    """Has nova-compute started after the transition was written?  None when
    the host cannot tell (then the caller must assume it has not)."""
    started = host.compute_started_at()
    if started is None or conf.changed_at is None:
        return None
    return started >= conf.changed_at


def cpu_text(guest: host_api.GuestCpu | None) -> str:
    """A guest CPU for a table cell: ``kvm64 +pcid`` or ``host-passthrough``."""
    if guest is None:
        return ''
    if guest.mode in ('host-passthrough', 'maximum') or not guest.model:
        return guest.mode or ''
    extra = sorted('+' + n for p, n in guest.features if p == 'require')
    if len(extra) > 4:
        extra = extra[:4] + ['(+%d)' % (len(extra) - 4)]
    return ' '.join([guest.model] + extra)


def server_row_base(server: Any) -> tuple[str, str]:
    return server.id, server.name or ''


def ordered(servers: Sequence[Any],
            rows: dict[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows in the order of the servers (one row per server)."""
    return [rows[s.id] for s in servers if s.id in rows]


def fail_if(failures: Sequence[str], columns: tuple[str, ...],
            rows: list[tuple[Any, ...]]) -> tuple[tuple[str, ...],
                                                   list[tuple[Any, ...]]]:
    """Return the rows, or raise PartialFailure naming every failure."""
    if failures:
        raise PartialFailure('; '.join(failures), columns, rows)
    return columns, rows
