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

"""run (the fleet) against a simulated cloud: the whole runbook for many
sources, in parallel, one source failing while another completes, finalize
now or later, re-runs, progress text."""

import threading
import time

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import fleet
from tests.unit import fakes


def world_of(per_source=2, stopped=0):
    world = fakes.World()
    for source in ('intel-1', 'intel-2'):
        world.boot(source, per_source, prefix=source)
        world.boot(source, stopped, status='SHUTOFF', prefix='off-' + source)
    return world


def go(world, **kwargs):
    kwargs.setdefault('sources', ['intel-1', 'intel-2'])
    kwargs.setdefault('destinations', ['amd-1', 'amd-2'])
    kwargs.setdefault('timeout', 60)
    ctx = kwargs.pop('ctx', None) or world.context()
    return fleet.run(ctx, **kwargs)


def native(world, server):
    guest = world.guest(server)
    host = world.hosts[server.compute_host]
    return guest.model == fakes.HOST_MODELS[host.vendor]


def test_run_moves_and_finalizes_every_server():
    world = world_of(per_source=2, stopped=1)
    found = go(world, parallel=2)
    assert sorted(r.result for r in found) == (
        ['cold-migrated'] * 2 + ['finalized'] * 4)
    for server in world.servers.values():
        assert server.compute_host.startswith('amd')
        if server.status == 'ACTIVE':
            assert native(world, server)
    for name in ('intel-1', 'intel-2'):
        host = world.hosts[name]
        assert not host.transitioned                   # nova.conf restored
        assert 'apply_transition' in host.calls
        assert world.services[name].status == 'disabled'
    assert all(r.host == r.destination and r.source.startswith('intel')
               for r in found)
    # a re-run carries on from the live state: nothing left to do
    again = go(world, parallel=2)
    assert {r.result for r in again} == {'already-finalized'}
    assert world.compute.live_migrate_server.call_count == 4


def test_run_finalize_later_then_now():
    world = world_of(per_source=1)
    found = go(world, finalize='later')
    assert [r.result for r in found] == ['live-migrated'] * 2
    assert not any(native(world, s) for s in world.servers.values())
    found = go(world)
    assert [r.result for r in found] == ['finalized'] * 2
    assert all(native(world, s) for s in world.servers.values())


def fail_from(world, source, why="Unacceptable CPU info: CPU doesn't have "
              "compatibility."):
    """Live migrations out of ``source`` fail at Nova's pre-check."""
    real = world.compute.live_migrate_server.side_effect

    def live_migrate(server, host=None, block_migration=None, **kw):
        s = world.servers[world._sid(server)]
        if s.compute_host == source and world.fail_migration is None:
            world._record(s, 'live-migration', host, 'error')
            world.fail_reason = why
            return None
        return real(server, host=host, block_migration=block_migration,
                    **kw)
    world.compute.live_migrate_server.side_effect = live_migrate
    return real


def test_one_source_fails_while_the_other_completes():
    world = world_of(per_source=2)
    real = fail_from(world, 'intel-2')
    with pytest.raises(PartialFailure) as exc:
        go(world, parallel=2)
    by_source = {}
    for row in exc.value.results:
        by_source.setdefault(row.source, []).append(row.result)
    assert by_source['intel-1'] == ['finalized', 'finalized']
    assert by_source['intel-2'] == ['failed', 'not-attempted']
    assert '1 of 4 servers failed' in str(exc.value)
    stayed = [s for s in world.servers.values()
              if s.compute_host == 'intel-2']
    assert len(stayed) == 2 and all(s.status == 'ACTIVE' for s in stayed)
    # the re-run (the fault gone) carries on where the first run stopped
    world.compute.live_migrate_server.side_effect = real
    found = go(world, parallel=2)
    assert sorted(r.result for r in found) == (
        ['already-finalized'] * 2 + ['finalized'] * 2)
    assert all(s.compute_host.startswith('amd')
               for s in world.servers.values())


def test_prepare_failure_stops_that_source_only():
    world = world_of(per_source=1)
    world.hosts['intel-2'].fail_start = True       # nova-compute won't start
    with pytest.raises(PartialFailure, match='intel-2 stopped') as exc:
        go(world, parallel=2)
    results = {r.source: r for r in exc.value.results}
    assert results['intel-1'].result == 'finalized'
    assert results['intel-2'].result == 'not-attempted'
    assert not world.hosts['intel-2'].transitioned    # rolled back


def test_run_refuses_guest_floor_but_moves_the_rest():
    world = world_of(per_source=1)
    [floor] = world.boot('intel-1', 1, prefix='floor',
                         metadata={'cpumigrate:cpu_floor': 'x86-64-v4'})
    with pytest.raises(PartialFailure, match='1 of 3') as exc:
        go(world)
    row = {r.id: r for r in exc.value.results}[floor.id]
    assert row.result == 'refused' and 'x86-64-v4' in row.reason
    assert world.servers[floor.id].compute_host == 'intel-1'
    # re-run: nothing left to pin; the row still says why it stays
    with pytest.raises(PartialFailure) as exc:
        go(world)
    row = {r.id: r for r in exc.value.results}[floor.id]
    assert row.result == 'refused' and 'x86-64-v4' in row.reason
    assert world.hosts['intel-1'].calls.count('apply_transition') == 1


def test_run_dry_run_is_the_plan_and_asks_once():
    world = world_of(per_source=1)
    found = go(world, dry_run=True)
    assert {r.result for r in found} == {'would-live-migrate'}
    world.compute.reboot_server.assert_not_called()
    asked = []
    go(world, ctx=world.context(confirm=lambda q: asked.append(q) or True))
    assert len(asked) == 1 and 'migrate 2 server(s)' in asked[0]
    with pytest.raises(WorkflowError, match='not confirmed'):
        go(world_of(), ctx=world_of().context(confirm=lambda q: False))
    with pytest.raises(WorkflowError, match='--finalize'):
        go(world, finalize='never')


def test_progress_lines():
    lines = []
    clock = fakes.FakeClock()
    progress = fleet.Progress(lines.append, {'a': 600, 'b': 600, 'c': 1200},
                              parallel=2, clock=clock)
    progress('web-3: live-migrating intel-1 -> amd-2')
    # the time of day comes from the progress logger's format (logs.py)
    assert lines[-1] == ('[0/3] web-3: live-migrating intel-1 -> '
                         'amd-2, about 20 min left')
    clock.t = 1000                        # 600 s planned took 1000 s
    progress.finished('a')
    progress('web-4: migrating for 10 s')
    assert lines[-1].endswith('[1/3] web-4: migrating for 10 s, about '
                              '50 min left')
    assert fleet.duration(7500) == '2 h 05 min'
    assert fleet.duration(30) == '30 s'


def test_run_progress_goes_through_the_counter():
    world = world_of(per_source=1)
    shown = []
    go(world, ctx=world.context(progress=shown.append))
    counted = [line for line in shown if '] ' in line]
    assert any('[0/2]' in line for line in counted)
    assert any('[1/2]' in line for line in counted)


def test_interrupted_run_stops_each_source_after_its_current_server():
    world = world_of(per_source=2)
    real = world.compute.live_migrate_server.side_effect
    moved = []

    def live_migrate(server, **kw):
        moved.append(server)
        if len(moved) == 1:
            raise KeyboardInterrupt       # Ctrl-C during the first move
        return real(server, **kw)
    world.compute.live_migrate_server.side_effect = live_migrate
    with pytest.raises(KeyboardInterrupt):
        go(world, sources=['intel-1'])
    assert len(moved) == 1
    world.compute.live_migrate_server.side_effect = real
    found = go(world, sources=['intel-1'])
    assert [r.result for r in found] == ['finalized'] * 2


def concurrency(world):
    """Track how many live migrations run at once (each POST holds its
    place for a moment, as a real migration would)."""
    real = world.compute.live_migrate_server.side_effect
    lock = threading.Lock()
    seen = {'now': 0, 'most': 0}

    def live_migrate(server, **kw):
        with lock:
            seen['now'] += 1
            seen['most'] = max(seen['most'], seen['now'])
        time.sleep(0.05)
        try:
            return real(server, **kw)
        finally:
            with lock:
                seen['now'] -= 1
    world.compute.live_migrate_server.side_effect = live_migrate
    return seen


@pytest.mark.parametrize('limit,asked,most', [
    (1, 3, 1),          # Nova's default caps what was asked
    (2, 3, 2),          # the host's setting caps what was asked
    (0, 3, 3),          # 0 (Nova's "unlimited"): the operator's choice
    (4, 1, 1),          # one at a time unless asked
])
def test_run_never_exceeds_max_concurrent_live_migrations(limit, asked,
                                                           most):
    world = fakes.World()
    world.boot('intel-1', 4)
    world.hosts['intel-1'].max_live_migrations = limit
    seen = concurrency(world)
    shown = []
    found = go(world, sources=['intel-1'], per_source=asked,
               ctx=world.context(progress=shown.append))
    assert [r.result for r in found] == ['finalized'] * 4
    assert seen['most'] == most
    capped = [line for line in shown if 'max_concurrent' in line]
    assert bool(capped) == (most < asked)


def test_run_per_source_stops_starting_after_a_failure():
    world = fakes.World()
    world.boot('intel-1', 4)
    world.hosts['intel-1'].max_live_migrations = 0
    fail_from(world, 'intel-1')
    seen = concurrency(world)            # each start takes a moment
    with pytest.raises(PartialFailure) as exc:
        go(world, sources=['intel-1'], per_source=2)
    assert seen['most'] == 2
    results = sorted(r.result for r in exc.value.results)
    # the two started together fail; the two after them never start
    assert results == ['failed', 'failed', 'not-attempted', 'not-attempted']
    with pytest.raises(WorkflowError, match='--migrations-per-source'):
        go(world, per_source=0)


def test_interrupted_run_rows_name_every_server_in_flight():
    world = world_of(per_source=2)
    world.hang_migration = True              # migrations keep running
    fake_sleep = world.clock.sleep
    world.clock.sleep = lambda s: time.sleep(0.005) or fake_sleep(s)
    real = world.compute.live_migrate_server.side_effect
    started = []

    def live_migrate(server, **kw):
        started.append(server)
        real(server, **kw)
        if len(started) == 2:                # both sources migrating
            raise KeyboardInterrupt
    world.compute.live_migrate_server.side_effect = live_migrate
    with pytest.raises(KeyboardInterrupt) as caught:
        go(world, parallel=2)
    found = {(r.source, r.result) for r in caught.value.results}
    assert found == {('intel-1', 'interrupted'), ('intel-1', 'not-attempted'),
                     ('intel-2', 'interrupted'), ('intel-2', 'not-attempted')}
    assert len(caught.value.results) == 4
    in_flight = caught.value.in_flight
    for server in started:
        assert '%s (%s): the live migration' % (server.name, server.id) in (
            in_flight)
        assert 'openstack server migration abort %s' % server.id in in_flight


def test_interrupted_as_a_migration_ends_says_it_ended():
    world = world_of(per_source=1)
    real = world.compute.live_migrate_server.side_effect

    def live_migrate(server, **kw):
        real(server, **kw)                   # completes at once
        raise KeyboardInterrupt
    world.compute.live_migrate_server.side_effect = live_migrate
    with pytest.raises(KeyboardInterrupt) as caught:
        go(world, sources=['intel-1'])
    [row] = caught.value.results
    assert row.result == 'interrupted'
    assert 'completed as the run was interrupted' in row.reason
    assert '"openstack cpumigrate finalize amd-' in row.reason
    found = go(world, sources=['intel-1'])   # the re-run finalizes it
    assert [r.result for r in found] == ['finalized']
