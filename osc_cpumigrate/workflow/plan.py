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

"""plan: what ``run`` will do to every server of many sources (read-only).

For each server of each source: its destination, the steps it will go
through (pin restart, live or cold migration, finalize restart), or why it
is refused (the guards ``check`` and ``pin`` apply: guest floors, busy,
stopped by an interrupted pin, a state that cannot move), and how long its
migration should take.

Destinations are packed with :class:`Packer`: the destinations' free
capacity from Placement, booked server by server under a lock (``run``'s
sources share one while they run in parallel), honouring server groups as
Nova's scheduler checks a live migration to a named host:

* ``anti-affinity`` (``ServerGroupAntiAffinityFilter``): never onto a host
  that already has ``max_server_per_host`` (rule, default 1) other members;
* ``affinity`` (``ServerGroupAffinityFilter``): only onto a host of the
  group, i.e. where a member is, the moving one included (Nova's
  ``InstanceGroup.get_hosts()``), so a group whose members all sit on
  sources, even a group of one, is refused;
* ``soft-anti-affinity`` and ``soft-affinity`` are weighers' preferences,
  which a migration to a named host does not consult: the packing prefers
  the destinations with the fewest (soft-anti-affinity) or the most
  (soft-affinity) other members, and says so in the row when it cannot.

The time estimate is the server's memory over the bandwidth the cloud's
recent live migrations achieved (:func:`bandwidth`).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
import threading
from typing import Any

from osc_cpumigrate.cloud import flavor_needs
from osc_cpumigrate.cloud import parse_time
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.types import Capacity
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import cpuchoice
from osc_cpumigrate.workflow import gate
from osc_cpumigrate.workflow import rows
from osc_cpumigrate.workflow.restart import stopped_by_us

LOG = logging.getLogger(__name__)

LIVE = 'live-migration'
COLD = 'migration'
#: Bytes per second assumed when the cloud has no completed live migration
#: to learn from: 1 Gbit/s, a conservative migration network.
DEFAULT_BANDWIDTH = 125_000_000
#: How many recent live migrations the bandwidth is learnt from.
RECENT = 10


class Packer:
    """The destinations' free capacity, booked server by server under a
    lock, honouring server groups: parallel sources never overfill a
    destination nor put anti-affinity members together."""

    def __init__(self, free: dict[str, Capacity],
                 groups: dict[str, gate.Group],
                 placed: dict[str, str]) -> None:
        self.free = dict(free)
        self.groups = groups
        self.placed = dict(placed)      # group members: ID -> host
        self.lock = threading.Lock()

    @classmethod
    def of(cls, ctx: common.Context, destinations: Sequence[str],
           checker: gate.Gate) -> Packer:
        """From Placement and the server groups the gate read (with the
        hosts of group members that are not moving)."""
        # soft policies are a preference: the packer follows them where
        # room allows and says so when it cannot; the gate only warns
        free = {d: ctx.cloud.capacity(d) for d in dict.fromkeys(destinations)}
        return cls(free, checker.groups, checker.placed)

    def book(self, server: Any,
             accepting: Sequence[str] | None = None) -> tuple[str, str]:
        """(destination, note) with its capacity booked, the note a soft
        policy's preference it could not meet (or ''); or ('', why not).
        Only among ``accepting`` (the gate's verdict) when given."""
        with self.lock:
            hosts = [d for d in self.free
                     if accepting is None or d in accepting]
            group = self.groups.get(server.id)
            if group is None:
                best = self._take(hosts, server)
                return best, '' if best else 'no destination has room'
            best, note = self._grouped(group, server, hosts)
            if best:
                self.placed[server.id] = best
            return best, note

    def release(self, server: Any, destination: str) -> None:
        """Give back a booking whose migration did not happen."""
        with self.lock:
            if destination in self.free:
                self.free[destination] = self.free[destination].minus(
                    *(-n for n in flavor_needs(server)))
            if self.placed.get(server.id) == destination:
                del self.placed[server.id]

    def _take(self, hosts: Sequence[str], server: Any) -> str:
        """Book the one of ``hosts`` with the most free RAM that fits."""
        return common.choose_destination(self.free, server, among=hosts)

    def _grouped(self, group: gate.Group, server: Any,
                 hosts: list[str]) -> tuple[str, str]:
        others = collections.Counter(
            self.placed[m] for m in group.members
            if m != server.id and m in self.placed)
        name = group.name
        if group.policy == 'anti-affinity':
            best = self._take([h for h in hosts if others[h]
                               < group.max_per_host], server)
            return best, '' if best else (
                'anti-affinity group %s: every destination with room '
                'already has %d member(s)' % (name, group.max_per_host))
        if group.policy == 'affinity':
            # Nova's ServerGroupAffinityFilter passes only the hosts of the
            # group's members, the moving one's own host included.
            mine = self.placed.get(server.id)
            together = [h for h in hosts if others[h] or h == mine]
            if not together:
                where = sorted(set(others) | ({mine} if mine else set()))
                return '', ('affinity group %s: its members are on %s, and '
                            'Nova moves a member only to a host of the '
                            'group' % (name, ', '.join(where) or '?'))
            best = self._take(together, server)
            return best, '' if best else (
                'affinity group %s: no room beside its members' % name)
        fits = [h for h in hosts if self.free[h].fits(
            *flavor_needs(server))]
        if not fits:
            return '', 'no destination has room'
        if group.policy == 'soft-anti-affinity':
            fewest = min(others[h] for h in fits)
            best = self._take([h for h in fits if others[h] == fewest],
                              server)
            return best, '' if not fewest else (
                'soft-anti-affinity group %s: shares %s with %d other '
                'member(s): every destination with room has one'
                % (name, best, fewest))
        most = max(others[h] for h in fits)
        best = self._take([h for h in fits if others[h] == most], server)
        away = sorted(h for h in others if h in self.free and h != best)
        return best, '' if most or not away else (
            'soft-affinity group %s: no room beside its members on %s'
            % (name, ', '.join(away)))


@dataclasses.dataclass(frozen=True)
class Bandwidth:
    bytes_per_second: float
    basis: str                     # how it was found, for the operator


def bandwidth(ctx: common.Context, hosts: Sequence[str]) -> Bandwidth:
    """What the cloud's recent completed live migrations into or out of
    ``hosts`` achieved: their guests' memory (flavor RAM) over their
    duration (the record's ``updated_at - created_at``), else
    :data:`DEFAULT_BANDWIDTH`.  Bounded: the :data:`RECENT` newest records
    of these hosts, one server GET each."""
    records: dict[str, Any] = {}
    for host in dict.fromkeys(hosts):
        for rec in ctx.cloud.host_migrations(host, LIVE):
            records[rec.id] = rec
    newest = sorted(records.values(), key=lambda r: r.updated_at or '',
                    reverse=True)[:RECENT]
    total_bytes = total_seconds = 0.0
    for rec in newest:
        start, end = parse_time(rec.created_at), parse_time(rec.updated_at)
        if start is None or end is None or end <= start:
            continue
        try:
            ram_mb = flavor_needs(ctx.cloud.get_server(rec.server_id))[1]
        except common.RECOVERABLE:
            continue                       # deleted since
        total_bytes += ram_mb * 2**20
        total_seconds += (end - start).total_seconds()
    if total_bytes and total_seconds:
        return Bandwidth(total_bytes / total_seconds, 'the last %d live '
                         'migrations' % len(newest))
    return Bandwidth(DEFAULT_BANDWIDTH, 'the default (no recent live '
                     'migration)')


def estimate(server: Any, speed: Bandwidth) -> int:
    """Seconds the live migration of ``server`` should take."""
    return max(1, round(flavor_needs(server)[1] * 2**20
                        / speed.bytes_per_second))


def require_hosts(ctx: common.Context, sources: Sequence[str],
                  destinations: Sequence[str]) -> None:
    """Every source known, every destination usable and no source."""
    if not sources or not destinations:
        raise WorkflowError('give at least one --source and one '
                            '--destination')
    both = set(sources) & set(destinations)
    if both:
        raise WorkflowError('%s both source and destination'
                            % ', '.join(sorted(both)))
    for source in dict.fromkeys(sources):
        ctx.cloud.compute_service(source)
    problems = []
    for dest in dict.fromkeys(destinations):
        problem = common.destination_problem(
            '', ctx.cloud.compute_service(dest))
        if problem:
            problems.append('%s is %s' % (dest, problem))
    if problems:
        raise WorkflowError('unusable destination: %s' % '; '.join(problems))


class Look:
    """What a source's nova.conf and domains say about its servers: pinned
    already, or refused a transition CPU by its guest floor or required
    CPU traits.  The transition CPU is worked out (as ``prepare`` would)
    only when a server still needs pinning."""

    def __init__(self, ctx: common.Context, host: host_api.Host,
                 destinations: Sequence[str], *, model: str,
                 flags: Sequence[str], ignore_guest_floor: bool) -> None:
        self.ctx, self.host, self.destinations = ctx, host, destinations
        self.model, self.flags = model, tuple(flags)
        self.ignore_guest_floor = ignore_guest_floor
        self.conf = host.nova_conf()
        self.host_cpu: host_api.HostCpu | None = None
        self.guard: Any = None
        self.settings: host_api.CpuSettings | None = None
        self.cpu: Any = None              # cpu.transition.TransitionCpu
        self.error = ''
        self.guests: dict[str, host_api.GuestCpu] = {}

    def guest(self, server: Any) -> host_api.GuestCpu:
        if server.id not in self.guests:
            self.guests[server.id] = self.host.guest_cpu(server.id)
        return self.guests[server.id]

    def pinned(self, server: Any) -> bool:
        guest = self.guest(server)
        if self.conf.transitioned:
            return common.runs_settings(guest, self.conf.settings)
        if self.host_cpu is None:
            self.host_cpu = self.host.host_cpu()
        return not common.is_native(guest, self.conf.original, self.host_cpu)

    def refusal(self, server: Any) -> str | None:
        """Why pin would refuse the server (its guest floor, its required
        CPU traits against the transition model), or None."""
        if self.cpu is None and not self.error:
            self._transition()
        if self.error:
            return self.error
        if not self.ignore_guest_floor:
            why = self.guard(server, self.settings, self.host)
            if why:
                return why
        return gate.trait_problem(
            server, {self.cpu.model: self.cpu.model_features})

    def _transition(self) -> None:
        from osc_cpumigrate.cpu import transition

        if self.conf.transitioned:
            self.settings = self.conf.settings
            try:
                self.cpu = transition.explicit(
                    gate.read_cpu_map(self.host), self.settings.model or '',
                    self.settings.extra_flags)
            except (ValueError, WorkflowError) as exc:
                self.error = 'its transition CPU: %s' % exc
                return
            self.guard = cpuchoice.floor_guard(self.ctx, self.cpu.features)
            return
        found, self.error = cpuchoice.proven(
            self.ctx, self.host.name, self.destinations, self.model,
            self.flags)
        if self.error:
            return
        self.cpu = found.cpu
        self.settings = host_api.CpuSettings(
            'custom', (found.cpu.model,), tuple(found.cpu.extra_flags))
        self.guard = cpuchoice.floor_guard(self.ctx, found.cpu.features)

    def steps(self, server: Any) -> tuple[str, list[str], str]:
        """(LIVE or COLD or '', the steps, why it is refused)."""
        source = self.host.name
        if stopped_by_us(server):
            return LIVE, ['start (interrupted pin)', 'live migration'], ''
        if server.status == 'MIGRATING':
            return LIVE, ['live migration (under way)'], ''
        doing = common.busy(server)
        if doing:
            return '', [], 'busy: %s' % doing
        if server.status == 'SHUTOFF':
            return COLD, ['cold migration'], ''
        if server.status != 'ACTIVE':
            return '', [], 'stays on %s: %s' % (source, server.status)
        if self.pinned(server):
            return LIVE, ['live migration'], ''
        why = self.refusal(server)
        if why:
            return '', [], why
        return LIVE, ['pin restart', 'live migration'], ''

    def verdict(self, checker: gate.Gate, server: Any,
                steps: Sequence[str]) -> gate.Verdict | None:
        """The gate on the move ``steps`` describe (None: a migration
        under way or a stopped server to start first is not judged)."""
        if steps[0] == 'cold migration':
            return checker.verdict(server, cpu_xml=None, machine=None,
                                   live=False)
        if steps[0] == 'pin restart':
            return checker.verdict(server, cpu_xml=self.cpu.as_xml(),
                                   machine=self.guest(server).machine)
        if steps[0] == 'live migration':
            guest = self.guest(server)
            return checker.verdict(server, cpu_xml=guest.xml,
                                   machine=guest.machine)
        return None


@dataclasses.dataclass
class Draft:
    """A fleet plan: its rows, and what ``run`` needs besides them."""

    rows: list[rows.PlanRow]
    to_pin: set[str]                  # sources prepare and pin must visit
    speed: Bandwidth
    packer: Packer                    # as booked by the plan
    #: Each source's [DEFAULT] max_concurrent_live_migrations.
    limits: dict[str, int] = dataclasses.field(default_factory=dict)


def plan(ctx: common.Context, *, sources: Sequence[str],
         destinations: Sequence[str], model: str = 'auto',
         flags: Sequence[str] = (), finalize: str = 'now',
         ignore_guest_floor: bool = False) -> list[rows.PlanRow]:
    """The plan's rows; PartialFailure when some server is refused."""
    draft = build(ctx, sources=sources, destinations=destinations,
                  model=model, flags=flags, finalize=finalize,
                  ignore_guest_floor=ignore_guest_floor)
    return common.finish(draft.rows)


def build(ctx: common.Context, *, sources: Sequence[str],
          destinations: Sequence[str], model: str, flags: Sequence[str],
          finalize: str, ignore_guest_floor: bool) -> Draft:
    require_hosts(ctx, sources, destinations)
    listed = {s: ctx.cloud.servers_on_host(s) for s in dict.fromkeys(sources)}
    found: list[rows.PlanRow] = []
    to_pin: set[str] = set()
    limits: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        checker = gate.Gate.open(ctx, stack, destinations, [
            s for servers in listed.values() for s in servers])
        packer = Packer.of(ctx, destinations, checker)
        initial = Packer(packer.free, packer.groups, packer.placed)
        speed = bandwidth(ctx, [*listed, *destinations])
        ctx.progress('migration times estimated at %.0f MB/s (%s)'
                     % (speed.bytes_per_second / 1e6, speed.basis))
        for source, servers in listed.items():
            host = stack.enter_context(ctx.host(source))
            look = Look(ctx, host, destinations, model=model, flags=flags,
                        ignore_guest_floor=ignore_guest_floor)
            limits[source] = look.conf.max_live_migrations
            if look.conf.transitioned:
                to_pin.add(source)
            for server in servers:
                found.append(server_row(look, checker, server, packer,
                                        speed, finalize=finalize))
                if found[-1].steps.startswith(('pin', 'start')):
                    to_pin.add(source)
    return Draft(found, to_pin, speed, initial, limits)


def server_row(look: Look, checker: gate.Gate, server: Any, packer: Packer,
               speed: Bandwidth, *, finalize: str) -> rows.PlanRow:
    source = look.host.name
    kind, steps, why = look.steps(server)
    destination = note = ''
    verdict = look.verdict(checker, server, steps) if not why else None
    if verdict is not None and not verdict.accepting:
        why = verdict.reason()
    if not why:
        destination, note = packer.book(
            server, verdict.accepting if verdict is not None else None)
        why = '' if destination else note
    if why:
        return rows.PlanRow(
            id=server.id, name=server.name or '', host=source,
            status=server.status, result=rows.REFUSED, reason=why,
            source=source)
    if note:
        LOG.warning('%s (%s): %s', server.name, server.id, note)
    if kind == LIVE and finalize == 'now':
        steps.append('finalize restart')
    return rows.PlanRow(
        id=server.id, name=server.name or '', host=source,
        status=server.status,
        result=rows.WOULD_LIVE_MIGRATE if kind == LIVE
        else rows.WOULD_COLD_MIGRATE,
        reason=note, source=source, destination=destination,
        steps=', '.join(steps),
        estimate=estimate(server, speed) if kind == LIVE else 0)
