"""prepare: runbook steps 1-3 on the source host.

Disable the compute service, write the transition CPU into nova.conf (backup,
atomic write, verify), restart nova-compute and wait for a fresh heartbeat.
If nova-compute does not come back, the original nova.conf goes back, the
service restarts again and the verb fails.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)

COLUMNS = ('Host', 'Service', 'CPU Before', 'CPU After', 'Backup', 'Result')
DEFAULT_REASON = 'osc-cpumigrate: moving servers to another CPU vendor'


def service_text(service: Any) -> str:
    text = '%s, %s' % (service.status, service.state)
    if service.status == 'disabled' and service.disabled_reason:
        text += ' (%s)' % service.disabled_reason
    return text


def restart_compute(ctx: common.Context, host: host_api.Host) -> Any:
    """Restart nova-compute and wait for a heartbeat newer than the restart."""
    ctx.progress('%s: restarting nova-compute' % host.name)
    host.restart_nova_compute()
    baseline = ctx.cloud.compute_service(host.name).updated_at
    service = ctx.cloud.wait_service_up(host.name, baseline,
                                        ctx.service_timeout)
    ctx.progress('%s: nova-compute is up again' % host.name)
    return service


def prepare(ctx: common.Context, host_name: str, model: str,
            flags: Sequence[str], reason: str | None,
            dry_run: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    service = ctx.cloud.compute_service(host_name)
    with ctx.host(host_name) as host:
        conf = host.nova_conf()
        plan = host.apply_transition(model, flags, dry_run=True)
        restarted = common.compute_restarted_since_transition(host, conf)
        need_write = plan.changed
        need_restart = need_write or not restarted
        need_disable = service.status != 'disabled'
        before = plan.before.describe()
        after = plan.after.describe()

        if dry_run:
            if plan.diff:
                ctx.progress(plan.diff)
            todo = [what for what, needed in (
                ('disable service', need_disable),
                ('write nova.conf', need_write),
                ('restart nova-compute', need_restart)) if needed]
            result = ('would ' + ', '.join(todo)) if todo else 'prepared'
            return COLUMNS, [(host_name, service_text(service), before,
                              after, conf.backup or '', result)]

        if need_disable:
            ctx.progress('%s: disabling the compute service' % host_name)
            service = ctx.cloud.disable_service(
                service, reason or DEFAULT_REASON)
        change = plan
        try:
            if need_write:
                change = host.apply_transition(model, flags)
                ctx.progress('%s: nova.conf now sets %s (backup %s)'
                             % (host_name, after, change.backup))
            if need_restart:
                service = restart_compute(ctx, host)
        except (WorkflowError, host_api.HostError) as exc:
            # nova-compute cannot run with the transition settings (whether
            # this run or an earlier one wrote them): put the original back.
            undo = rollback(ctx, host, service, disabled=need_disable)
            raise WorkflowError('prepare %s failed: %s; %s'
                                % (host_name, exc, undo)) from None

        backup = change.backup or host.nova_conf().backup or ''
        result = 'prepared' if (need_write or need_restart or need_disable) \
            else 'already prepared'
        return COLUMNS, [(host_name, service_text(service), before, after,
                          backup, result)]


def rollback(ctx: common.Context, host: host_api.Host, service: Any,
             disabled: bool) -> str:
    """Put the host back as it was before this run; say what was done.

    Whether the file holds transition settings is read again: a write that
    was refused (someone else changed the file) left nothing to undo."""
    done = []
    try:
        if host.nova_conf().transitioned:
            host.restore_original()
            done.append('the original nova.conf was restored')
            restart_compute(ctx, host)
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
