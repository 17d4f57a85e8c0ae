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

"""migrate: runbook step 8.

Live-migrates the pinned servers of the source, one at a time, to the
destination with the most free RAM that fits each; cold-migrates SHUTOFF
servers (they get the destination's CPU when they next start).  Success is
the migration record's final state *and* the server on the destination:
since microversion 2.34 a failed pre-check still answers 202.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
from typing import Any

from openstack import exceptions as sdk_exc

from osc_cpumigrate import errors
from osc_cpumigrate.choices import ON_TIMEOUT
from osc_cpumigrate.cloud import flavor_needs
from osc_cpumigrate.cloud import MIGRATION_DONE
from osc_cpumigrate.cloud import MIGRATION_FAILED
from osc_cpumigrate.cloud import parse_time
from osc_cpumigrate.errors import HostError
from osc_cpumigrate.errors import http_message
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import gate
from osc_cpumigrate.workflow import hostlock
from osc_cpumigrate.workflow import rows
from osc_cpumigrate.workflow import stopkey
from osc_cpumigrate.workflow.restart import stopped_by_us

LOG = logging.getLogger(__name__)

LIVE = 'live-migration'
COLD = 'migration'
#: How long a started migration may go without a record before we look for
#: the reason in the instance actions.
RECORD_GRACE = 60.0
PROGRESS_EVERY = 10.0
#: The shortest pause between two looks at a live migration (around its
#: expected end) and the longest (far from it, once the end is expected).
POLL_MIN = 0.25
POLL_MAX = PROGRESS_EVERY / 2


class Pace:
    """How fast this run's live migrations went (seconds per MiB of guest
    RAM, from Nova's own records), so the next one's end is expected and
    looked for when it comes rather than up to one polling interval
    later.  One per run, shared by the sources of a fleet run."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.mib = 0.0

    def learn(self, server: Any, record: Any) -> None:
        start = parse_time(record.created_at)
        end = parse_time(record.updated_at)
        ram = flavor_needs(server)[1]
        if start and end and end > start and ram:
            self.seconds += (end - start).total_seconds()
            self.mib += ram

    def expected(self, server: Any) -> float | None:
        """Seconds the live migration of ``server`` should take, or None
        before the run has seen one."""
        if not self.mib:
            return None
        return flavor_needs(server)[1] * self.seconds / self.mib


@dataclasses.dataclass
class Move:
    server: Any
    kind: str          # LIVE | COLD
    destination: str = ''
    #: A migration an earlier run started: it keeps its own destination
    #: (from its record) and books no capacity.
    under_way: bool = False
    #: The live domain's CPU (a live migration), for the gate.
    guest: Any = None
    #: The destinations the gate found would accept it.
    accepting: tuple[str, ...] = ()


def require_destinations(ctx: common.Context, source: str,
                         destinations: Sequence[str]) -> None:
    """Every destination must be another host, enabled and up."""
    if not destinations:
        raise WorkflowError('give at least one --destination')
    problems = []
    for dest in dict.fromkeys(destinations):
        if dest == source:
            problems.append('%s is the source itself' % dest)
            continue
        problem = common.destination_problem(
            source, ctx.cloud.compute_service(dest))
        if problem:
            problems.append('%s is %s' % (dest, problem))
    if problems:
        raise WorkflowError('unusable destination: %s' % '; '.join(problems))


def row(server: Any, source: str, result: str, reason: str = '', *,
        destination: str = '', seconds: float = 0,
        now: Any = None) -> rows.MigrateRow:
    """A row; ``now``: the server as last read (where it is now)."""
    now = now or server
    return rows.MigrateRow(
        id=server.id, name=server.name or '',
        host=now.compute_host or source, status=now.status, result=result,
        reason=reason, source=source, destination=destination,
        seconds=round(seconds))


@hostlock.holds_lock
def migrate(ctx: common.Context, source: str, *,
            destinations: Sequence[str], servers: Sequence[str] = (),
            timeout: float = 1800.0, on_timeout: str = 'abort',
            dry_run: bool = False) -> list[rows.MigrateRow]:
    """Move the servers of ``source`` (all, or those named)."""
    if on_timeout not in ON_TIMEOUT:
        raise WorkflowError('--on-timeout must be one of %s'
                            % ', '.join(ON_TIMEOUT))
    ctx.cloud.compute_service(source)
    require_destinations(ctx, source, destinations)
    selected = ctx.cloud.selected_servers(source, servers)
    found: dict[str, rows.MigrateRow] = {}
    moves = plan_moves(ctx, source, selected, found)
    moves = admit(ctx, source, destinations, moves, found)
    free = {d: ctx.cloud.capacity(d) for d in dict.fromkeys(destinations)} \
        if moves else {}
    stopped = False
    pace = Pace()
    for move in moves:
        server = move.server
        if stopped:
            found[server.id] = row(server, source, rows.NOT_ATTEMPTED,
                                   'the run stopped at an earlier failure')
            continue
        if not move.destination and not move.under_way:
            move.destination = book(free, move)
        if not move.destination and not move.under_way:
            found[server.id] = row(server, source, rows.FAILED,
                                   'no destination has room')
            continue
        if dry_run:
            found[server.id] = row(
                server, source, rows.WOULD_LIVE_MIGRATE if move.kind == LIVE
                else rows.WOULD_COLD_MIGRATE, destination=move.destination)
            continue
        try:
            found[server.id] = move_one(ctx, source, move, timeout=timeout,
                                        on_timeout=on_timeout, pace=pace)
        except KeyboardInterrupt as exc:
            raise interrupted(exc, ctx, source, move,
                              everyone(selected, moves), found) from None
        stopped = found[server.id].result == rows.FAILED
    return common.finish([found[s.id] for s in everyone(selected, moves)
                          if s.id in found])


def admit(ctx: common.Context, source: str, destinations: Sequence[str],
          moves: list[Move], found: dict[str, rows.MigrateRow]) \
        -> list[Move]:
    """The gate, before any migration starts: each new move learns the
    destinations that would accept it; one that none would is refused
    with the reason.  The destinations' SSH sessions close before the
    first migration (which may take an hour)."""
    new = [m for m in moves if not m.destination and not m.under_way]
    if not new:
        return moves
    refused = set()
    with contextlib.ExitStack() as stack:
        checker = gate.Gate.open(ctx, stack, destinations,
                                 [m.server for m in moves])
        for move in new:
            guest = move.guest
            verdict = checker.verdict(
                move.server, cpu_xml=guest.xml if guest else None,
                machine=guest.machine if guest else None,
                live=move.kind == LIVE)
            for text in verdict.warnings:
                ctx.progress('%s: %s' % (move.server.name, text))
            move.accepting = verdict.accepting
            if not verdict.accepting:
                found[move.server.id] = row(move.server, source,
                                            rows.REFUSED, verdict.reason())
                refused.add(move.server.id)
    return [m for m in moves if m.server.id not in refused]


def book(free: dict[str, Any], move: Move) -> str:
    """The destination with the most free RAM among those that accept
    the server; its capacity booked."""
    return common.choose_destination(free, move.server,
                                     among=move.accepting)


def everyone(selected: Sequence[Any], moves: Sequence[Move]) -> list[Any]:
    """The servers of the rows, in order: those selected, then those an
    earlier run left in a cold migration."""
    return list(selected) + [m.server for m in moves if m.server.id
                             not in {s.id for s in selected}]


def interrupted(exc: KeyboardInterrupt, ctx: common.Context, source: str,
                move: Move, servers: Sequence[Any],
                found: dict[str, rows.MigrateRow]) -> KeyboardInterrupt:
    """SIGINT/SIGTERM while moving ``move.server``: a live migration
    keeps running in Nova; the row names the commands that follow or
    abort it (a re-run of migrate follows it too)."""
    server = move.server
    doing = under_way(ctx, source, move)
    found[server.id] = row(server, source, rows.INTERRUPTED, doing,
                           destination=move.destination or '')
    for other in servers:
        if other.id not in found:
            found[other.id] = row(other, source, rows.NOT_ATTEMPTED,
                                  'the run was interrupted')
    return errors.interrupted(exc, [found[s.id] for s in servers],
                              '%s (%s): %s' % (server.name, server.id, doing))


def under_way(ctx: common.Context, source: str, move: Move) -> str:
    """What an interruption while moving ``move.server`` leaves under way
    in Nova, and the commands that follow or abort it."""
    server = move.server
    if move.kind == LIVE:
        migration = running_migration(ctx, server)
        ended = migration == '<migration-id>' and ended_migration(ctx,
                                                                  server)
        if ended:
            return ended
        return ('the live migration to %s keeps running in Nova: follow '
                'it with "openstack server migration show %s %s" or by '
                'running migrate (or run) again; abort it with "openstack '
                'server migration abort %s %s"' % (
                    move.destination or '?', server.id, migration,
                    server.id, migration))
    return ('the cold migration to %s goes on in Nova: the next '
            '"openstack cpumigrate migrate %s ..." confirms it (or '
            '"openstack server resize confirm %s")'
            % (move.destination or '?', source, server.id))


def ended_migration(ctx: common.Context, server: Any) -> str:
    """When no live migration of the server is under way any more (it
    ended as the interruption came), what its newest record says and what
    to run, or ''."""
    try:
        records = ctx.cloud.migrations(server, LIVE)
    except (*common.RECOVERABLE, KeyboardInterrupt):
        return ''
    if not records or records[0].status not in (MIGRATION_DONE
                                                + MIGRATION_FAILED):
        return ''
    record = records[0]
    if record.status in MIGRATION_FAILED:
        return ('the live migration to %s (migration %s) ended %s as the '
                'run was interrupted: the server stays on its source'
                % (record.dest_compute or '?', record.id, record.status))
    return ('the live migration to %s (migration %s) completed as the run '
            'was interrupted: "openstack cpumigrate finalize %s" (or run '
            'again) finalizes it' % (record.dest_compute or '?', record.id,
                                     record.dest_compute or '<host>'))


def running_migration(ctx: common.Context, server: Any) -> str:
    """The id of the server's live migration under way, or
    ``<migration-id>`` when Nova cannot say (one quick read)."""
    record = ctx.cloud.migration_progress(server)
    return str(record.id) if record is not None else '<migration-id>'


def move_one(ctx: common.Context, source: str, move: Move, *,
             timeout: float, on_timeout: str,
             pace: Pace | None = None) -> rows.MigrateRow:
    """Migrate one server; its row.  ``pace``: the run's live migrations
    so far (when to look for this one's end)."""
    server = move.server
    start = ctx.cloud.clock()
    try:
        if move.kind == LIVE:
            now = live_migrate(ctx, server, source, move.destination,
                               timeout, on_timeout, pace or Pace())
        else:
            now = cold_migrate(ctx, server, source, move.destination,
                               timeout)
    except common.RECOVERABLE as exc:
        why = common.reason(exc)
        try:
            now = ctx.cloud.get_server(server)
        except common.RECOVERABLE:
            now = server
        return row(server, source, rows.FAILED, why,
                   destination=move.destination,
                   seconds=ctx.cloud.clock() - start, now=now)
    return row(server, source,
               rows.LIVE_MIGRATED if move.kind == LIVE
               else rows.COLD_MIGRATED, destination=move.destination,
               seconds=ctx.cloud.clock() - start, now=now)


def plan_moves(ctx: common.Context, source: str, servers: Sequence[Any],
               found: dict[str, rows.MigrateRow]) -> list[Move]:
    """Which servers move and how; rows for those that do not: a server
    left on the source is a host not emptied (refused: the verb fails)."""
    moves = unconfirmed_cold(ctx, source)
    with ctx.host(source) as host:
        conf = host.nova_conf()
        host_cpu = None
        for server in servers:
            why = None
            if server.status == 'MIGRATING':
                moves.append(Move(server, LIVE, under_way_to(
                    ctx, server, source), under_way=True))
            elif server.status == 'ACTIVE' and not server.task_state:
                if host_cpu is None:
                    host_cpu = host.host_cpu()
                try:
                    guest = host.guest_cpu(server.id)
                except HostError as exc:
                    found[server.id] = row(server, source, rows.FAILED,
                                           common.reason(exc))
                    continue
                if common.is_native(guest, conf.original, host_cpu):
                    why = ('not pinned: it runs the host CPU %s; run '
                           '"openstack cpumigrate pin %s" first'
                           % (common.cpu_text(guest), source))
                else:
                    moves.append(Move(server, LIVE, guest=guest))
            elif stopped_by_us(server) and stopkey.proof(ctx,
                                                          server) is None:
                why = ('stopped by an interrupted pin: run "openstack '
                       'cpumigrate pin %s" to start it again' % source)
            elif server.status == 'SHUTOFF' and not server.task_state:
                moves.append(Move(server, COLD))
            else:
                why = 'stays on %s: %s' % (
                    source, common.busy(server) or server.status)
            if why:
                found[server.id] = row(server, source, rows.REFUSED, why)
    return moves


def under_way_to(ctx: common.Context, server: Any, source: str) -> str:
    """The destination of the live migration under way out of ``source``
    (its record's), or '' when Nova has no such record."""
    for record in ctx.cloud.migrations(server, LIVE):     # newest first
        if record.source_compute == source and record.status not in (
                MIGRATION_DONE + MIGRATION_FAILED):
            return record.dest_compute or ''
    return ''


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


def live_migrate(ctx: common.Context, server: Any, source: str, dest: str,
                 timeout: float, on_timeout: str, pace: Pace) -> Any:
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
            send_migration(ctx, server, lambda: cloud.live_migrate(server,
                                                                   dest))
        except Exception as exc:
            raise refused(ctx, server, exc) from None
    record = follow(ctx, server, LIVE, known, timeout, on_timeout, pace)
    pace.learn(server, record)
    dest = record.dest_compute or dest
    return cloud.wait_for_server(server, 'ACTIVE', ctx.server_timeout,
                                 host=dest)


def cold_migrate(ctx: common.Context, server: Any, source: str, dest: str,
                 timeout: float) -> Any:
    cloud = ctx.cloud
    known = {m.id for m in cloud.migrations(server, COLD)}
    if server.status != 'VERIFY_RESIZE':
        ctx.progress('%s: cold-migrating (it is %s) from %s to %s'
                     % (server.name, server.status, source, dest))
        try:
            send_migration(ctx, server, lambda: cloud.cold_migrate(server,
                                                                   dest))
        except Exception as exc:
            raise refused(ctx, server, exc, kind=COLD) from None
        follow(ctx, server, COLD, known, timeout, on_timeout=None)
    server = cloud.wait_for_server(server, 'VERIFY_RESIZE', ctx.server_timeout)
    cloud.confirm_resize(server)
    return cloud.wait_for_server(server, ('SHUTOFF', 'ACTIVE'),
                                 ctx.server_timeout, host=server.compute_host)


def send_migration(ctx: common.Context, server: Any,
                   request: Callable[[], Any]) -> None:
    """A migration request that got no answer may have started: following
    it (a new record, or none within RECORD_GRACE) tells.  Never sent
    again: a second migration of the same server is not harmless."""
    common.send(ctx, server, request, what='migration request',
                then='following whatever Nova does')


def refused(ctx: common.Context, server: Any, exc: Exception, *,
            kind: str = LIVE) -> Exception:
    """The error for a migration request that failed: Nova's answer (the
    real reason of a synchronous pre-check's "No valid host" is in the
    instance action's events), or the API error itself."""
    if not isinstance(exc, sdk_exc.HttpException):
        return exc
    if kind == COLD:
        return WorkflowError('Nova refused the migration: %s'
                             % http_message(exc))
    why = ctx.cloud.action_error(server, 'live-migration')
    return WorkflowError('Nova refused the live migration: %s%s'
                         % (http_message(exc), ' (%s)' % why if why else ''))


def follow(ctx: common.Context, server: Any, kind: str, known: set[str],
           timeout: float, on_timeout: str | None,
           pace: Pace | None = None) -> Any:
    """Wait for the new migration record of ``kind`` to finish; its failure
    reason comes from the instance-action events.

    One :func:`osc_cpumigrate.poll.wait_for` (through ``Cloud.wait``): the
    poller owns time (the deadline is ``timeout`` plus the server timeout,
    for an abort or force-complete to take effect), :class:`Follow` owns
    the states and, as the progress callback, reports and acts on
    ``--on-timeout``, and paces the looks (:meth:`Follow.interval`)."""
    watch = Follow(ctx, server, kind, timeout, on_timeout,
                   expected=pace.expected(server) if pace else None)
    cloud = ctx.cloud
    start = cloud.clock()

    def fetch() -> tuple[Any, float]:
        records = [m for m in cloud.migrations(server, kind)
                   if m.id not in known]
        return (records[0] if records else None), cloud.clock() - start

    record, _elapsed = cloud.wait(
        fetch, done=watch.done, failed=watch.failed, progress=watch.progress,
        interval=watch.interval, timeout=timeout + ctx.server_timeout,
        message='the migration did not finish within %d s' % timeout)
    return record


@dataclasses.dataclass
class Follow:
    """The states of one migration being followed."""

    ctx: common.Context
    server: Any
    kind: str
    timeout: float
    on_timeout: str | None
    #: Seconds the migration should take (the run's pace, then the
    #: memory copied so far), None while unknown.
    expected: float | None = None
    last_report: float = 0.0
    acted: bool = False

    def interval(self, seen: tuple[Any, float]) -> float:
        """The pause before the next look: the cloud's interval while the
        end cannot be expected; else half the time to the expected end
        (at most :data:`POLL_MAX`, at least :data:`POLL_MIN`), and, once
        that is past, half the time it is late: a few looks around the end
        instead of one every interval, and no faster polling for long."""
        record, elapsed = seen
        if self.expected is None or record is None:
            return self.ctx.cloud.interval
        return min(POLL_MAX, max(POLL_MIN,
                                 abs(self.expected - elapsed) / 2))

    @property
    def action(self) -> str:
        return 'live-migration' if self.kind == LIVE else 'migrate'

    def done(self, seen: tuple[Any, float]) -> bool:
        record = seen[0]
        return record is not None and record.status in MIGRATION_DONE

    def failed(self, seen: tuple[Any, float]) -> str | None:
        record, elapsed = seen
        cloud = self.ctx.cloud
        if record is not None and record.status in MIGRATION_FAILED:
            reason = cloud.action_error(self.server, self.action) or (
                'the migration record ended %s' % record.status)
            return ('migration %s: %s; the server stays on its source'
                    % (record.status, reason))
        if record is None and elapsed > RECORD_GRACE:
            reason = cloud.action_error(self.server, self.action)
            return 'no migration record appeared%s' % (
                ': %s' % reason if reason else '')
        return None

    def progress(self, seen: tuple[Any, float], _since: float) -> None:
        record, elapsed = seen
        if self.kind == LIVE and elapsed - self.last_report >= PROGRESS_EVERY:
            self.last_report = elapsed
            running = report_progress(self.ctx, self.server, elapsed)
            self.expected = expected_end(running) or self.expected
        if (elapsed > self.timeout and record is not None
                and self.on_timeout is not None and not self.acted):
            self.acted = True
            self.act(record)

    def act(self, record: Any) -> None:
        """Abort or force-complete a migration that has run too long."""
        ctx, server, what = self.ctx, self.server, self.on_timeout
        ctx.progress('%s: no end after %d s: %s' % (server.name,
                                                    self.timeout, what))
        try:
            if what == 'abort':
                ctx.cloud.abort_migration(record, server)
            else:
                ctx.cloud.force_complete_migration(record, server)
        except common.RECOVERABLE as exc:
            # It may have ended meanwhile: keep following it.
            ctx.progress('%s: %s refused: %s' % (server.name, what,
                                                 common.reason(exc)))


def expected_end(running: Any) -> float | None:
    """Seconds the running migration should take in all, from the memory
    Nova says it has copied in how long (its record's own times, so no
    clock but Nova's is compared), or None when it cannot say yet."""
    if running is None:
        return None
    total, done = running.memory_total_bytes, running.memory_processed_bytes
    start = parse_time(running.created_at)
    end = parse_time(running.updated_at)
    if not (total and done and start and end) or end <= start:
        return None
    return (end - start).total_seconds() * min(total / done, 100.0)


def report_progress(ctx: common.Context, server: Any,
                    elapsed: float) -> Any:
    """A progress line; the running migration as Nova shows it."""
    running = ctx.cloud.migration_progress(server)
    memory = ''
    if running is not None and running.memory_total_bytes:
        memory = ', memory %d/%d MiB' % (
            (running.memory_processed_bytes or 0) // 2**20,
            running.memory_total_bytes // 2**20)
    ctx.progress('%s: migrating for %d s%s' % (server.name, elapsed, memory))
    return running
