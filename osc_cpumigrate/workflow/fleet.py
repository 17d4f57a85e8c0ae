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

"""run: the whole runbook for many sources, in parallel.

Each source goes through the verbs' own workflow, nothing of the runbook
written twice: ``prepare`` and ``pin`` (when a server still needs its
transition CPU), then ``migrate``'s per-server steps
(:func:`migrate.plan_moves`, :func:`migrate.move_one`) one server at a time,
each live-migrated server finalized on its destination as soon as it has
arrived (``finalize`` with that one server), unless ``--finalize later``.

Up to ``parallel`` sources run at once, one thread each with its own
:class:`~osc_cpumigrate.cloud.Cloud` over the one SDK connection (a
keystoneauth session is shared across threads by openstacksdk itself) and
its own SSH sessions.  Each source live-migrates ``per_source`` servers at
once (``--migrations-per-source``, default 1), never more than its
nova.conf's ``[DEFAULT] max_concurrent_live_migrations`` (0, Nova's
"unlimited", leaves the choice to the operator).  Destinations are shared: a
:class:`plan.Packer` books capacity under a lock as servers are assigned.  A
failure stops its source only; every server gets a row; the run fails (exit
1) at the end.  A re-run carries on from the live state: the verbs are
idempotent, and servers an earlier run moved but did not finalize are
finalized first.

Ctrl-C (SIGINT) or SIGTERM reaches the main thread only: it sets
:attr:`Fleet.stop`, and each source's thread stops at its next pause (its
waits sleep through :func:`stoppable`) the way the verbs stop on an
interruption, naming what it leaves under way; the run then raises the
interruption with every row (:func:`errors.interrupted`), which the command
prints before exiting 130 (143).

This module orchestrates the verbs, so it imports them (the one module
allowed to); no verb imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from concurrent import futures
import copy
import dataclasses
import logging
import threading
import time
from typing import Any

from osc_cpumigrate import errors
from osc_cpumigrate.choices import ON_TIMEOUT
from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import finalize as finalize_verb
from osc_cpumigrate.workflow import hostlock
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import plan
from osc_cpumigrate.workflow import prepare
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)

FINALIZE_WHEN = ('now', 'later')
#: The real sleep, whose pauses an interruption can cut short.
_SLEEP = time.sleep


class Progress:
    """Timestamped progress lines with a counter of servers done and an
    estimate of the time left: ``16:02:11 [12/288] web-3: ..., about 41
    min left``.

    Before any server is done, the time left is the plan's migration
    estimates over the sources running in parallel; after, it is
    extrapolated from the run itself (wall time so far, times the planned
    work left over the planned work done), so it includes what the plan
    cannot know: restarts, nova-compute restarts, waits."""

    def __init__(self, say: Callable[[str], None], estimates: dict[str, int],
                 *, parallel: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.say, self.estimates = say, dict(estimates)
        self.parallel, self.clock = max(1, parallel), clock
        self.start = clock()
        self.done: set[str] = set()
        self.lock = threading.Lock()

    def finished(self, server_id: str) -> None:
        with self.lock:
            self.done.add(server_id)

    def left(self) -> float:
        todo = sum(s for sid, s in self.estimates.items()
                   if sid not in self.done)
        planned = sum(self.estimates.get(sid, 0) for sid in self.done)
        if not planned:
            return todo / self.parallel
        return (self.clock() - self.start) * todo / planned

    def __call__(self, message: str) -> None:
        with self.lock:
            left = self.left()
            line = '[%d/%d] %s%s' % (
                len(self.done), len(self.estimates), message.rstrip(),
                ', about %s left' % duration(left) if left else '')
            self.say(line)


def duration(seconds: float) -> str:
    """``41 min``, ``2 h 05 min``, ``30 s``."""
    seconds = round(seconds)
    if seconds < 60:
        return '%d s' % seconds
    minutes = round(seconds / 60)
    if minutes < 60:
        return '%d min' % minutes
    return '%d h %02d min' % divmod(minutes, 60)


@dataclasses.dataclass
class Fleet:
    """One run: its options and what the sources share."""

    ctx: common.Context
    destinations: Sequence[str]
    packer: plan.Packer
    progress: Progress
    to_pin: set[str]
    method: str = 'hard-reboot'
    finalize_now: bool = True
    model: str = 'auto'
    flags: Sequence[str] = ()
    timeout: float = 1800.0
    on_timeout: str = 'abort'
    ignore_guest_floor: bool = False
    #: Why the plan refused a server: its row's reason when it stays.
    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: list[str] = dataclasses.field(default_factory=list)
    #: The run's live migrations so far: when to look for the next end.
    pace: migrate.Pace = dataclasses.field(default_factory=migrate.Pace)
    #: Live migrations at once per source, as asked
    #: (--migrations-per-source), and
    #: each source's max_concurrent_live_migrations (plan.Draft.limits).
    per_source: int = 1
    limits: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Set when the run is interrupted: each source stops at its next
    #: pause, naming what it leaves under way in :attr:`in_flight`.
    stop: threading.Event = dataclasses.field(
        default_factory=threading.Event)
    in_flight: list[str] = dataclasses.field(default_factory=list)

    def worker(self) -> common.Context:
        """A context for one source's thread: its own Cloud over the same
        connection whose pauses end when the run is interrupted, progress
        through the shared counter, no question (the run asked once)."""
        cloud = copy.copy(self.ctx.cloud)
        cloud.sleep = stoppable(self.stop, cloud.sleep)
        return dataclasses.replace(
            self.ctx, cloud=cloud, progress=self.progress,
            confirm=lambda question: True)

    def width(self, source: str) -> int:
        """How many live migrations out of ``source`` at once."""
        limit = self.limits.get(source, 1)
        return self.per_source if limit == 0 else min(self.per_source,
                                                      limit)


def stoppable(stop: threading.Event,
              sleep: Callable[[float], None]) -> Callable[[float], None]:
    """``sleep`` that ends early and raises KeyboardInterrupt in a
    source's thread once the run is interrupted (a signal reaches only
    the main thread), so the verbs stop there as they do on Ctrl-C."""

    def pause(seconds: float) -> None:
        if sleep is _SLEEP:
            stop.wait(seconds)
        else:
            sleep(seconds)
        if stop.is_set():
            raise KeyboardInterrupt('the run was interrupted')

    return pause


def fleet_row(row: Any, source: str, *, result: str | None = None,
              reason: str | None = None, destination: str = '',
              seconds: int = 0) -> rows.FleetRow:
    """A fleet row from a verb's row (or from a server)."""
    is_row = isinstance(row, rows.ServerRow)
    return rows.FleetRow(
        id=row.id, name=row.name or '',
        host=(row.host if is_row else row.compute_host) or source,
        status=row.status,
        result=result or row.result,
        reason=row.reason if reason is None else reason, source=source,
        destination=destination or getattr(row, 'destination', ''),
        seconds=seconds or getattr(row, 'seconds', 0))


def run(ctx: common.Context, *, sources: Sequence[str],
        destinations: Sequence[str], parallel: int = 1,
        finalize: str = 'now', method: str = 'hard-reboot',
        model: str = 'auto', flags: Sequence[str] = (),
        timeout: float = 1800.0, on_timeout: str = 'abort',
        ignore_guest_floor: bool = False, per_source: int = 1,
        dry_run: bool = False) -> list[Any]:
    """Carry out the runbook for every source; ``dry_run``: the plan."""
    if finalize not in FINALIZE_WHEN:
        raise WorkflowError('--finalize must be now or later')
    if parallel < 1:
        raise WorkflowError('--parallel must be at least 1')
    if per_source < 1:
        raise WorkflowError('--migrations-per-source must be at least 1')
    if on_timeout not in ON_TIMEOUT:
        raise WorkflowError('--on-timeout must be one of %s'
                            % ', '.join(ON_TIMEOUT))
    common.require_method(method)
    sources = list(dict.fromkeys(sources))
    draft = plan.build(ctx, sources=sources, destinations=destinations,
                       model=model, flags=flags, finalize=finalize,
                       ignore_guest_floor=ignore_guest_floor)
    if dry_run:
        return common.finish(draft.rows)
    moving = [r for r in draft.rows if r.result != rows.REFUSED]
    if moving:
        ctx.approve('carry out the runbook on %s: restart (%s) and migrate '
                    '%d server(s) to %s' % (
                        ', '.join(sources), method, len(moving),
                        ', '.join(dict.fromkeys(destinations))))
    fx = Fleet(ctx, destinations, draft.packer,
               Progress(ctx.progress, {r.id: r.estimate for r in moving},
                        parallel=min(parallel, len(sources)),
                        clock=ctx.cloud.clock),
               draft.to_pin, method=method, finalize_now=finalize == 'now',
               model=model, flags=flags, timeout=timeout,
               on_timeout=on_timeout, ignore_guest_floor=ignore_guest_floor,
               refused={r.id: r.reason for r in draft.rows
                        if r.result == rows.REFUSED},
               per_source=per_source, limits=draft.limits)
    # the plan's estimate runs as many migrations at once as the widest
    # `parallel` sources allow
    fx.progress.parallel = max(1, sum(sorted(
        (fx.width(s) for s in sources), reverse=True)[:parallel]))
    for source in sources:
        if fx.width(source) < per_source:
            ctx.progress('%s: %d live migration(s) at once, its nova.conf\'s '
                         'max_concurrent_live_migrations'
                         % (source, fx.width(source)))
    signalled: KeyboardInterrupt | None = None
    with futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        jobs = [pool.submit(run_source, fx, s) for s in sources]
        try:
            futures.wait(jobs)
        except KeyboardInterrupt as exc:       # SIGINT, SIGTERM
            signalled = exc
            fx.stop.set()
            ctx.progress('interrupted: each source stops at its next step; '
                         'run again to carry on')
        found = gathered(fx, draft, sources, jobs)
    if fx.stop.is_set():
        raise errors.interrupted(signalled or KeyboardInterrupt(), found,
                                 '; '.join(fx.in_flight)) from None
    return common.finish(found, extra=fx.extra)


def gathered(fx: Fleet, draft: plan.Draft, sources: Sequence[str],
             jobs: Sequence[futures.Future]) -> list[rows.FleetRow]:
    """Every server's row, in the plan's order, source by source; a source
    the interruption kept from starting keeps its plan's rows as
    not-attempted (or refused)."""
    order = {r.id: i for i, r in enumerate(draft.rows)}
    found: list[rows.FleetRow] = []
    for source, job in zip(sources, jobs, strict=True):
        if job.cancel():
            per_source = [fleet_row(
                r, source, result=r.result if r.result == rows.REFUSED
                else rows.NOT_ATTEMPTED, reason=r.reason or
                'the run was interrupted', destination='')
                for r in draft.rows if r.source == source]
        else:
            per_source = job.result()
        found += sorted(per_source, key=lambda r: order.get(r.id, 1e9))
    return found


def run_source(fx: Fleet, source: str) -> list[rows.FleetRow]:
    """One source, from where it stands to empty; its rows.  A failure
    stops this source (the rest of its servers: not-attempted)."""
    ctx = fx.worker()
    out: dict[str, rows.FleetRow] = {}
    try:
        # the source's lock for its whole runbook (prepare and pin take it
        # again: the lock is re-entrant within a run)
        with hostlock.hold(ctx, source, 'run'):
            stop = fx.finalize_now and finish_arrived(fx, ctx, source, out)
            stop = stop or pin_source(fx, ctx, source, out)
            if not stop:
                migrate_source(fx, ctx, source, out)
    except common.RECOVERABLE as exc:
        why = common.reason(exc)
        fx.extra.append('%s stopped: %s' % (source, why))
        ctx.progress('%s: stopped: %s' % (source, why))
        stop = True
    except KeyboardInterrupt as exc:
        was_interrupted(fx, source, exc, out)
        stop = True
    if stop:
        left_behind(ctx, source, out, why='the run was interrupted'
                    if fx.stop.is_set() else
                    '%s stopped at an earlier failure' % source)
    return list(out.values())


def was_interrupted(fx: Fleet, source: str, exc: KeyboardInterrupt,
                    out: dict[str, rows.FleetRow]) -> None:
    """A source's step stopped by an interruption (the run's, or one in
    this thread): its rows and what it left under way."""
    fx.stop.set()
    for row in getattr(exc, 'results', []):
        if row.result != rows.NOT_ATTEMPTED or row.id not in out:
            out[row.id] = fleet_row(row, source)
    doing = getattr(exc, 'in_flight', '')
    if doing:
        fx.in_flight.append(doing)


def left_behind(ctx: common.Context, source: str,
                out: dict[str, rows.FleetRow], *, why: str) -> None:
    """Rows for the servers a stopped source did not get to."""
    try:
        servers = ctx.cloud.servers_on_host(source)
    except (*common.RECOVERABLE, KeyboardInterrupt):
        return
    for server in servers:
        if server.id not in out:
            out[server.id] = fleet_row(server, source,
                                       result=rows.NOT_ATTEMPTED,
                                       reason=why)


def finish_arrived(fx: Fleet, ctx: common.Context, source: str,
                   out: dict[str, rows.FleetRow]) -> bool:
    """Finalize the servers an earlier run moved live from the source to a
    destination and did not finalize; True if one failed (stop)."""
    arrived: dict[str, set[str]] = {}
    for rec in ctx.cloud.host_migrations(source, migrate.LIVE):
        if rec.source_compute == source and rec.dest_compute in (
                fx.destinations):
            arrived.setdefault(rec.dest_compute, set()).add(rec.server_id)
    stop = False
    for dest, ids in arrived.items():
        here = [s.id for s in ctx.cloud.servers_on_host(dest) if s.id in ids]
        if not here:
            continue
        try:
            results = finalize_verb.finalize(ctx, dest, servers=here,
                                             method=fx.method)
        except PartialFailure as exc:
            results = exc.results
        for row in results:
            out[row.id] = fleet_row(row, source, destination=dest)
            stop = stop or row.result in rows.FAILURES
    return stop


def pin_source(fx: Fleet, ctx: common.Context, source: str,
               out: dict[str, rows.FleetRow]) -> bool:
    """prepare and pin the source when the plan says a server still needs
    its transition CPU; True if the source must stop."""
    if source not in fx.to_pin:
        return False
    prepare.prepare(ctx, source, destinations=fx.destinations,
                    model=fx.model, flags=fx.flags)
    try:
        results = pin.pin(ctx, source, method=fx.method,
                          ignore_guest_floor=fx.ignore_guest_floor,
                          destinations=fx.destinations)
    except PartialFailure as exc:
        results = exc.results
        if not any(r.result in rows.FAILURES for r in results):
            raise WorkflowError(str(exc)) from None    # nova.conf restore
    for row in results:
        if row.result in (*rows.FAILURES, rows.NOT_ATTEMPTED):
            out[row.id] = fleet_row(row, source, reason='pin: ' + row.reason)
    return any(r.result == rows.FAILED for r in results)


def migrate_source(fx: Fleet, ctx: common.Context, source: str,
                   out: dict[str, rows.FleetRow]) -> None:
    """Move the source's servers, :meth:`Fleet.width` live migrations at
    once (one by default, never more than its nova.conf allows); after a
    failure or an interruption no other move starts."""
    found: dict[str, rows.MigrateRow] = {}
    moves = migrate.plan_moves(ctx, source, ctx.cloud.servers_on_host(source),
                               found)
    moves = migrate.admit(ctx, source, fx.destinations, moves, found)
    for sid, row in found.items():
        out.setdefault(sid, fleet_row(row, source,
                                      reason=fx.refused.get(sid)))
    failed = threading.Event()

    def one(move: migrate.Move) -> None:
        server = move.server
        if failed.is_set() or fx.stop.is_set():
            out[server.id] = fleet_row(
                server, source, result=rows.NOT_ATTEMPTED,
                reason='the run was interrupted' if fx.stop.is_set()
                else 'the source stopped at an earlier failure')
            return
        try:
            out[server.id] = move_server(fx, ctx, source, move)
        except KeyboardInterrupt as exc:
            was_interrupted(fx, source, exc, out)
            return
        if out[server.id].result == rows.FAILED:
            failed.set()

    width = fx.width(source)
    if width == 1 or len(moves) < 2:
        for move in moves:
            one(move)
        return
    with futures.ThreadPoolExecutor(max_workers=width) as pool:
        list(pool.map(one, moves))


def move_server(fx: Fleet, ctx: common.Context, source: str,
                move: migrate.Move) -> rows.FleetRow:
    """Book a destination, migrate (migrate's own step), finalize."""
    server = move.server
    if not move.destination:          # a move under way keeps its own
        move.destination, why = fx.packer.book(server, move.accepting)
        if not move.destination:
            fx.progress.finished(server.id)
            return fleet_row(server, source, result=rows.REFUSED,
                             reason=why)
        if why:                     # a soft policy's preference not met
            LOG.warning('%s (%s): %s', server.name, server.id, why)
    try:
        row = migrate.move_one(ctx, source, move, timeout=fx.timeout,
                               on_timeout=fx.on_timeout, pace=fx.pace)
    except KeyboardInterrupt as exc:
        doing = migrate.under_way(ctx, source, move)
        raise errors.interrupted(exc, [fleet_row(
            server, source, result=rows.INTERRUPTED, reason=doing,
            destination=move.destination)], '%s (%s): %s' % (
                server.name, server.id, doing)) from None
    fx.progress.finished(server.id)
    if row.result == rows.FAILED:
        fx.packer.release(server, move.destination)
    if row.result != rows.LIVE_MIGRATED or not fx.finalize_now:
        return fleet_row(row, source)
    return finalize_one(fx, ctx, source, row)


def finalize_one(fx: Fleet, ctx: common.Context, source: str,
                 moved: rows.MigrateRow) -> rows.FleetRow:
    """Finalize one server that has just arrived on its destination."""
    try:
        [done] = finalize_verb.finalize(ctx, moved.destination,
                                        servers=[moved.id], method=fx.method)
    except PartialFailure as exc:
        [done] = exc.results
    except common.RECOVERABLE as exc:
        return fleet_row(moved, source, result=rows.FAILED,
                         reason='live-migrated; finalize failed: %s'
                         % common.reason(exc))
    if done.result in (rows.FINALIZED, rows.ALREADY_FINALIZED):
        return fleet_row(moved, source, result=rows.FINALIZED,
                         reason='live-migrated, then finalized')
    return fleet_row(moved, source, result=done.result,
                     reason='live-migrated; finalize: %s' % done.reason)
