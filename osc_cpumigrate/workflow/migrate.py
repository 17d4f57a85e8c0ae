"""migrate: runbook step 8.

Live-migrates the pinned servers of the source, one at a time, to the
destination with the most free RAM that fits each; cold-migrates SHUTOFF
servers (they get the destination's CPU when they next start).  Success is
the migration record's final state *and* the server on the destination:
since microversion 2.34 a failed pre-check still answers 202.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

from openstack import exceptions as sdk_exc

from osc_cpumigrate.choices import ON_TIMEOUT
from osc_cpumigrate.cloud import Capacity
from osc_cpumigrate.cloud import flavor_needs
from osc_cpumigrate.cloud import MIGRATION_DONE
from osc_cpumigrate.cloud import MIGRATION_FAILED
from osc_cpumigrate.cloud import stopped_by_us
from osc_cpumigrate.errors import http_message
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)

COLUMNS = ('Server', 'Name', 'Source', 'Destination', 'Result', 'Seconds')
LIVE = 'live-migration'
COLD = 'migration'
#: How long a started migration may go without a record before we look for
#: the reason in the instance actions.
RECORD_GRACE = 60.0
PROGRESS_EVERY = 10.0


@dataclasses.dataclass
class Move:
    server: Any
    kind: str          # LIVE | COLD
    destination: str = ''


def check_destinations(ctx: common.Context, source: str,
                       destinations: Sequence[str]) -> None:
    """Every destination must be another host, enabled and up."""
    if not destinations:
        raise WorkflowError('give at least one --destination')
    problems = []
    for dest in dict.fromkeys(destinations):
        if dest == source:
            problems.append('%s is the source itself' % dest)
            continue
        service = ctx.cloud.compute_service(dest)
        if service.status != 'enabled':
            problems.append('%s is disabled%s' % (
                dest, ' (%s)' % service.disabled_reason
                if service.disabled_reason else ''))
        elif service.state != 'up':
            problems.append('%s is down' % dest)
    if problems:
        raise WorkflowError('unusable destination: %s' % '; '.join(problems))


def migrate(ctx: common.Context, source: str, destinations: Sequence[str],
            server_names: Sequence[str], timeout: float, on_timeout: str,
            dry_run: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    if on_timeout not in ON_TIMEOUT:
        raise WorkflowError('--on-timeout must be one of %s'
                            % ', '.join(ON_TIMEOUT))
    ctx.cloud.compute_service(source)
    check_destinations(ctx, source, destinations)
    servers = ctx.cloud.selected_servers(source, server_names)
    rows: dict[str, tuple[Any, ...]] = {}
    failures: list[str] = []
    moves = plan_moves(ctx, source, servers, rows, failures)

    free = {d: ctx.cloud.capacity(d) for d in dict.fromkeys(destinations)} \
        if moves else {}
    stopped = False
    for move in moves:
        server = move.server
        base = (*common.server_row_base(server), source)
        if stopped:
            rows[server.id] = (*base, '', 'not migrated: the run stopped', 0)
            continue
        if not move.destination:      # a move under way keeps its own
            move.destination = choose_destination(free, server)
        if not move.destination:
            failures.append('%s: no destination has room for it'
                            % (server.name or server.id))
            rows[server.id] = (*base, '', 'failed: no destination has room',
                               0)
            continue
        verb = 'live-migrate' if move.kind == LIVE else 'cold-migrate'
        if dry_run:
            rows[server.id] = (*base, move.destination, 'would %s' % verb, 0)
            continue
        start = ctx.cloud.clock()
        try:
            if move.kind == LIVE:
                live_migrate(ctx, server, source, move.destination, timeout,
                             on_timeout)
            else:
                cold_migrate(ctx, server, source, move.destination, timeout)
        except common.RECOVERABLE as exc:
            why = common.reason(exc)
            failures.append('%s: %s' % (server.name or server.id, why))
            rows[server.id] = (*base, move.destination, 'failed: %s' % why,
                               round(ctx.cloud.clock() - start))
            stopped = True
            continue
        rows[server.id] = (*base, move.destination,
                           'live-migrated' if move.kind == LIVE
                           else 'cold-migrated',
                           round(ctx.cloud.clock() - start))
    everyone = list(servers) + [m.server for m in moves
                                if m.server.id not in {s.id for s in servers}]
    return common.fail_if(failures, COLUMNS, common.ordered(everyone, rows))


def plan_moves(ctx: common.Context, source: str, servers: Sequence[Any],
               rows: dict[str, tuple[Any, ...]],
               failures: list[str]) -> list[Move]:
    """Which servers move and how; rows (and failures) for those that do
    not: a server left on the source is a host not emptied."""
    moves = unconfirmed_cold(ctx, source)
    with ctx.host(source) as host:
        conf = host.nova_conf()
        host_cpu = None
        for server in servers:
            base = (*common.server_row_base(server), source, '')
            if server.status == 'MIGRATING':
                moves.append(Move(server, LIVE))
            elif server.status == 'ACTIVE' and not server.task_state:
                if host_cpu is None:
                    host_cpu = host.host_cpu()
                guest = host.guest_cpu(server.id)
                if common.is_native(guest, conf.original, host_cpu):
                    why = ('not pinned: it runs the host CPU %s; run '
                           '"openstack cpumigrate pin %s" first'
                           % (common.cpu_text(guest), source))
                    failures.append('%s: %s' % (server.name or server.id,
                                                why))
                    rows[server.id] = (*base, 'refused: %s' % why, 0)
                    continue
                moves.append(Move(server, LIVE))
            elif stopped_by_us(server):
                why = ('stopped by an interrupted pin: run "openstack '
                       'cpumigrate pin %s" to start it again' % source)
                failures.append('%s: %s' % (server.name or server.id, why))
                rows[server.id] = (*base, 'refused: %s' % why, 0)
            elif server.status == 'SHUTOFF' and not server.task_state:
                moves.append(Move(server, COLD))
            else:
                state = common.busy(server) or server.status
                failures.append('%s stays on %s: %s' % (
                    server.name or server.id, source, state))
                rows[server.id] = (*base, 'skipped: %s (it stays on %s)'
                                   % (state, source), 0)
    return moves


def unconfirmed_cold(ctx: common.Context, source: str) -> list[Move]:
    """Cold migrations out of the source that an interrupted run left
    waiting for confirmation: Nova already lists those servers on their
    destination, so they are found through the migration records."""
    moves = []
    for record in ctx.cloud.host_migrations(source, COLD, status='finished'):
        if record.source_compute != source:
            continue
        server = ctx.cloud.get_server(record.server_id)
        if server.status == 'VERIFY_RESIZE':
            moves.append(Move(server, COLD, record.dest_compute))
    return moves


def choose_destination(free: dict[str, Capacity], server: Any) -> str:
    """The destination with the most free RAM that fits the server; its
    capacity is booked so the next server sees what is left."""
    needs = flavor_needs(server)
    fitting = [d for d, cap in free.items() if cap.fits(*needs)]
    if not fitting:
        return ''
    best = max(fitting, key=lambda d: (free[d].ram_mb, free[d].vcpus))
    free[best] = free[best].minus(*needs)
    return best


def live_migrate(ctx: common.Context, server: Any, source: str, dest: str,
                 timeout: float, on_timeout: str) -> None:
    cloud = ctx.cloud
    records = cloud.migrations(server, LIVE)
    known = {m.id for m in records}
    if server.status == 'MIGRATING':
        # An earlier run was interrupted: follow the migration under way
        # (not an older, finished one).
        running = [m for m in records if m.source_compute == source
                   and m.status not in MIGRATION_DONE + MIGRATION_FAILED]
        known -= {m.id for m in running[:1]}
        ctx.progress('%s: following the live migration already under way'
                     % server.name)
    else:
        ctx.progress('%s: live-migrating from %s to %s'
                     % (server.name, source, dest))
        try:
            cloud.live_migrate(server, dest)
        except sdk_exc.HttpException as exc:
            # Synchronous pre-checks (2.30-2.33) answer "No valid host";
            # the real reason is in the instance action's events.
            why = cloud.action_error(server, 'live-migration')
            raise WorkflowError('Nova refused the live migration: %s%s'
                                % (http_message(exc),
                                   ' (%s)' % why if why else '')) from None
    record = follow(ctx, server, LIVE, known, timeout, on_timeout)
    dest = record.dest_compute or dest
    cloud.wait_for_server(server, 'ACTIVE', ctx.server_timeout, host=dest)


def cold_migrate(ctx: common.Context, server: Any, source: str, dest: str,
                 timeout: float) -> None:
    cloud = ctx.cloud
    known = {m.id for m in cloud.migrations(server, COLD)}
    if server.status != 'VERIFY_RESIZE':
        ctx.progress('%s: cold-migrating (it is %s) from %s to %s'
                     % (server.name, server.status, source, dest))
        try:
            cloud.cold_migrate(server, dest)
        except sdk_exc.HttpException as exc:
            raise WorkflowError('Nova refused the migration: %s'
                                % http_message(exc)) from None
        follow(ctx, server, COLD, known, timeout, on_timeout=None)
    server = cloud.wait_for_server(server, 'VERIFY_RESIZE', ctx.server_timeout)
    cloud.confirm_resize(server)
    cloud.wait_for_server(server, ('SHUTOFF', 'ACTIVE'), ctx.server_timeout,
                          host=server.compute_host)


def follow(ctx: common.Context, server: Any, kind: str, known: set[str],
           timeout: float, on_timeout: str | None) -> Any:
    """Wait for the new migration record of ``kind`` to finish; its failure
    reason comes from the instance-action events."""
    cloud = ctx.cloud
    start = cloud.clock()
    last_report = start
    acted = False
    action = 'live-migration' if kind == LIVE else 'migrate'
    while True:
        records = [m for m in cloud.migrations(server, kind)
                   if m.id not in known]
        record = records[0] if records else None
        elapsed = cloud.clock() - start
        if record is not None and record.status in MIGRATION_DONE:
            return record
        if record is not None and record.status in MIGRATION_FAILED:
            reason = cloud.action_error(server, action) or (
                'the migration record ended %s' % record.status)
            raise WorkflowError('migration %s: %s; the server stays on its '
                                'source' % (record.status, reason))
        if record is None and elapsed > RECORD_GRACE:
            reason = cloud.action_error(server, action)
            raise WorkflowError('no migration record appeared%s'
                                % (': %s' % reason if reason else ''))
        if kind == LIVE and elapsed - (last_report - start) >= PROGRESS_EVERY:
            last_report = cloud.clock()
            report_progress(ctx, server, elapsed)
        if elapsed > timeout and record is not None:
            if on_timeout is None or acted:
                if elapsed > timeout + ctx.server_timeout:
                    raise WorkflowError('the migration did not finish within '
                                        '%d s' % timeout)
            else:
                acted = True
                ctx.progress('%s: no end after %d s: %s' % (
                    server.name, timeout, on_timeout))
                try:
                    if on_timeout == 'abort':
                        cloud.abort_migration(record, server)
                    else:
                        cloud.force_complete_migration(record, server)
                except common.RECOVERABLE as exc:
                    # It may have ended meanwhile: keep following it.
                    ctx.progress('%s: %s refused: %s' % (
                        server.name, on_timeout, common.reason(exc)))
        cloud.sleep(cloud.interval)


def report_progress(ctx: common.Context, server: Any, elapsed: float) -> None:
    running = ctx.cloud.migration_progress(server)
    memory = ''
    if running is not None and running.memory_total_bytes:
        memory = ', memory %d/%d MiB' % (
            (running.memory_processed_bytes or 0) // 2**20,
            running.memory_total_bytes // 2**20)
    ctx.progress('%s: migrating for %d s%s' % (server.name, elapsed, memory))
