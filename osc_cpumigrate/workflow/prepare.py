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

"""prepare: runbook steps 1-3 on the source host.

Disable the compute service, write the transition CPU into nova.conf (backup,
atomic write, verify), restart nova-compute and wait for a fresh heartbeat.
If nova-compute does not come back, the original nova.conf goes back, the
service restarts again and the verb fails.
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from typing import Any

from osc_cpumigrate import errors
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import cpuchoice
from osc_cpumigrate.workflow import hostlock
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)

DEFAULT_REASON = 'osc-cpumigrate: moving servers to another CPU vendor'


@hostlock.holds_lock
def prepare(ctx: common.Context, host_name: str, *,
            destinations: Sequence[str] = (), model: str = 'auto',
            flags: Sequence[str] = (), disable_reason: str | None = None,
            dry_run: bool = False) -> list[rows.PrepareRow]:
    """Prepare ``host_name`` with the transition CPU (``model`` auto:
    chosen with the destinations)."""
    model, flags = cpuchoice.choose(ctx, host_name, destinations, model,
                                    flags)
    service = ctx.cloud.compute_service(host_name)
    with ctx.host(host_name) as host:
        conf = host.nova_conf()
        unguarded = startup_guard(ctx, host_name, conf)
        plan = host.apply_transition(model, flags, destinations=destinations,
                                     dry_run=True)
        restarted = common.compute_restarted_since_written(host, conf)
        steps = [step for step, needed in (
            ('disable service', service.status != 'disabled'),
            ('write nova.conf', plan.changed),
            # The destinations alone change no CPU: no restart for them.
            ('restart nova-compute',
             plan.before != plan.after or not restarted))
            if needed]
        if 'restart nova-compute' not in steps:
            require_compute_up(ctx, host_name)
        if dry_run:
            if plan.diff:
                ctx.progress(plan.diff)
            return [prepare_row(
                service, plan, conf.backup or '',
                rows.WOULD_PREPARE if steps else rows.ALREADY_PREPARED,
                '; '.join(filter(None, (
                    'would ' + ', '.join(steps) if steps else '',
                    unguarded))))]
        try:
            service, change = apply(ctx, host, service, plan, steps,
                                    model=model, flags=flags,
                                    destinations=destinations,
                                    reason=disable_reason or DEFAULT_REASON)
        except KeyboardInterrupt as exc:
            raise errors.interrupted(exc, [], (
                '%s: interrupted during %s; run "openstack cpumigrate '
                'prepare %s" again to carry on, or see "openstack '
                'cpumigrate host show %s"' % (host_name, ', '.join(steps),
                                              host_name, host_name))) from None
        backup = change.backup or host.nova_conf().backup or ''
        return [prepare_row(
            service, plan, backup,
            rows.PREPARED if steps else rows.ALREADY_PREPARED,
            '; '.join(filter(None, (', '.join(steps), unguarded))))]


def startup_guard(ctx: common.Context, host_name: str,
                  conf: host_api.ConfState) -> str:
    """When the source's Nova skips its own CPU check at start, say so (a
    warning, and the text for the row's Reason): cpumigrate's proof with
    libvirt is then the only guard.  '' when Nova checks too."""
    skipped = cpuchoice.startup_check_skipped(conf)
    if not skipped:
        return ''
    text = ('Nova skips its CPU check at start (%s): only cpumigrate\'s '
            'hypervisor-cpu-compare proved the transition CPU' % skipped)
    LOG.warning('%s: %s', host_name, text)
    return text


def require_compute_up(ctx: common.Context, host_name: str) -> None:
    """A host whose nova-compute is down is not prepared, whatever its
    nova.conf says: nothing would run its servers' restarts."""
    down = common.compute_down(ctx, host_name)
    if down:
        raise WorkflowError('%s is not ready: %s (or run "openstack '
                            'cpumigrate prepare %s" again once it is up)'
                            % (host_name, down, host_name))


def prepare_row(service: Any, plan: host_api.Change, backup: str,
                result: str, reason: str) -> rows.PrepareRow:
    return rows.PrepareRow(
        host=service.host, service_status=service.status,
        service_state=service.state,
        disabled_reason=service.disabled_reason or '',
        cpu_before=rows.Cpu.of_settings(plan.before),
        cpu_after=rows.Cpu.of_settings(plan.after), backup=backup,
        result=result, reason=reason)


def apply(ctx: common.Context, host: host_api.Host, service: Any,
          plan: host_api.Change, steps: Sequence[str], *, model: str,
          flags: Sequence[str], destinations: Sequence[str],
          reason: str) -> tuple[Any, host_api.Change]:
    """Do the steps; on failure put the host back as it was and fail."""
    host_name = host.name
    disabling = 'disable service' in steps
    if disabling:
        ctx.progress('%s: disabling the compute service' % host_name)
        service = ctx.cloud.disable_service(service, reason)
    change = plan
    try:
        if 'write nova.conf' in steps:
            change = host.apply_transition(model, flags,
                                           destinations=destinations)
            ctx.progress('%s: nova.conf now sets %s (backup %s)%s'
                         % (host_name, plan.after.describe(), change.backup,
                            '; pin will check migrations to '
                            + ', '.join(destinations) if destinations
                            else ''))
        if 'restart nova-compute' in steps:
            service = common.restart_compute(ctx, host)
    except (WorkflowError, host_api.HostError) as exc:
        # nova-compute cannot run with the transition settings (whether
        # this run or an earlier one wrote them): put the original back.
        # An earlier, interrupted prepare may have disabled the service:
        # its reason says so, and the host goes back enabled all the same.
        undo = rollback(ctx, host, service, disabled=disabling or (
            service.status == 'disabled'
            and service.disabled_reason == reason))
        raise WorkflowError('prepare %s failed: %s; %s'
                            % (host_name, exc, undo)) from None
    return service, change


def rollback(ctx: common.Context, host: host_api.Host, service: Any, *,
             disabled: bool) -> str:
    """Put the host back as it was before this run; say what was done.

    Whether the file holds transition settings is read again: a write that
    was refused (someone else changed the file) left nothing to undo."""
    done = []
    try:
        if host.nova_conf().transitioned:
            host.restore_original()
            done.append('the original nova.conf was restored')
            common.restart_compute(ctx, host)
            done.append('nova-compute restarted with it')
        if disabled:
            ctx.cloud.enable_service(service)
            done.append('the compute service was enabled again')
    except Exception as exc:  # report, never mask the first failure
        done.append('rolling back failed too (%s): check the host by hand '
                    'and run "openstack cpumigrate status %s"'
                    % (str(exc).splitlines()[0] if str(exc) else exc,
                       host.name))
    return ', '.join(done) or 'nothing was changed'
