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

"""plan against a simulated cloud: packing, server groups, refusals,
estimates, and capacity booked under parallel sources."""

from concurrent import futures

from openstack.compute.v2 import migration as _migration
from openstack.compute.v2 import server_group as _server_group
import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.types import Capacity
from osc_cpumigrate.workflow import plan
from tests.unit import fakes


def make(world, **kwargs):
    kwargs.setdefault('destinations', ['amd-1', 'amd-2'])
    kwargs.setdefault('sources', ['intel-1', 'intel-2'])
    return plan.plan(world.context(), **kwargs)


def group(world, policy, members, name='g'):
    world.groups.append(_server_group.ServerGroup(
        id=name, name=name, policy=policy, member_ids=[s.id for s in members]))


def test_plan_rows_steps_and_packing():
    world = fakes.World()
    on1 = world.boot('intel-1', 3)
    off = world.boot('intel-1', 1, status='SHUTOFF', prefix='off')
    on2 = world.boot('intel-2', 2)
    found = make(world)
    by_id = {r.id: r for r in found}
    assert [r.id for r in found] == [s.id for s in off + on1 + on2]
    # the gate and the packer share one listing of the server groups
    assert world.compute.server_groups.call_count == 1
    for server in on1 + on2:
        row = by_id[server.id]
        assert row.result == 'would-live-migrate'
        assert row.steps == 'pin restart, live migration, finalize restart'
        assert row.host == row.source == server.compute_host
        assert row.estimate >= 1
    assert by_id[off[0].id].result == 'would-cold-migrate'
    assert by_id[off[0].id].steps == 'cold migration'
    counts = [sum(r.destination == d for r in found)
              for d in ('amd-1', 'amd-2')]
    assert sorted(counts) == [3, 3]          # packed by free RAM
    world.compute.live_migrate_server.assert_not_called()
    assert world.hosts['intel-1'].calls.count('apply_transition') == 0
    later = make(world, finalize='later')
    assert 'finalize' not in later[0].steps


def test_plan_honours_server_groups():
    world = fakes.World()
    anti = world.boot('intel-1', 3, prefix='anti')
    near = world.boot('intel-2', 2, prefix='near')
    world.capacity['amd-1'] = Capacity(64, 65536 * 2, 1000)   # attracts all
    group(world, 'anti-affinity', anti, 'spread')
    group(world, 'affinity', near, 'together')
    with pytest.raises(PartialFailure) as exc:
        make(world)
    by_id = {r.id: r for r in exc.value.results}
    dests = [by_id[s.id].destination for s in anti]
    assert sorted(dests[:2]) == ['amd-1', 'amd-2']
    assert by_id[anti[2].id].result == 'refused'
    assert 'anti-affinity group spread' in by_id[anti[2].id].reason
    # Nova's affinity filter lets a member go only where the group is
    assert {by_id[s.id].result for s in near} == {'refused'}
    assert 'only to a host of the group' in by_id[near[0].id].reason


def test_plan_affinity_follows_a_member_that_stays():
    world = fakes.World()
    near = world.boot('intel-1', 2, prefix='near')
    there = world.boot('amd-2', 1, prefix='there')
    group(world, 'affinity', near + there)
    found = make(world, sources=['intel-1'])
    assert {r.destination for r in found} == {'amd-2'}
    world2 = fakes.World()
    near = world2.boot('intel-1', 1, prefix='near')
    group(world2, 'affinity', near + world2.boot('intel-2', 1))
    with pytest.raises(PartialFailure,
                       match='members are on intel-1, intel-2'):
        make(world2, sources=['intel-1'])


def test_plan_affinity_group_of_one_stays_as_nova_would_refuse_it():
    # Nova's ServerGroupAffinityFilter passes only the group's hosts, the
    # moving member's own included: a group of one cannot move by a live
    # migration to a named host.
    world = fakes.World()
    alone = world.boot('intel-1', 1, prefix='alone')
    group(world, 'affinity', alone, 'solo')
    with pytest.raises(PartialFailure, match='members are on intel-1'):
        make(world, sources=['intel-1'])


def test_plan_anti_affinity_max_server_per_host():
    world = fakes.World()
    anti = world.boot('intel-1', 5, prefix='anti')
    world.groups.append(_server_group.ServerGroup(
        id='g', name='g', policy='anti-affinity',
        rules={'max_server_per_host': 2},
        member_ids=[s.id for s in anti]))
    with pytest.raises(PartialFailure, match='1 of 5') as exc:
        make(world, sources=['intel-1'])
    found = exc.value.results
    assert sorted(r.destination for r in found if r.destination) == [
        'amd-1', 'amd-1', 'amd-2', 'amd-2']
    assert 'already has 2 member(s)' in found[-1].reason


def test_plan_soft_anti_affinity_spreads_then_warns(caplog):
    world = fakes.World()
    soft = world.boot('intel-1', 3, prefix='soft')
    world.capacity['amd-1'] = Capacity(64, 65536 * 2, 1000)   # attracts all
    group(world, 'soft-anti-affinity', soft, 'spread')
    found = make(world, sources=['intel-1'])        # never refused
    assert [r.result for r in found] == ['would-live-migrate'] * 3
    assert sorted(r.destination for r in found[:2]) == ['amd-1', 'amd-2']
    assert found[0].reason == found[1].reason == ''
    assert found[2].reason == ('soft-anti-affinity group spread: shares '
                               'amd-1 with 1 other member(s): every '
                               'destination with room has one')
    assert 'soft-anti-affinity group spread' in caplog.text


def test_plan_soft_affinity_keeps_members_together_where_room_allows():
    world = fakes.World()
    soft = world.boot('intel-1', 3, prefix='soft')
    world.capacity['amd-2'] = Capacity(64, 65536 * 2, 1000)
    group(world, 'soft-affinity', soft, 'near')
    found = make(world, sources=['intel-1'])
    assert {r.destination for r in found} == {'amd-2'}
    assert {r.reason for r in found} == {''}
    # no room beside the members: elsewhere, with a note
    world = fakes.World(hosts=('intel-1', 'amd-2', 'amd-3'))
    soft = world.boot('intel-1', 2, prefix='soft')
    world.capacity['amd-2'] = Capacity(64, 1000, 1000)        # one fits
    world.capacity['amd-3'] = Capacity(64, 900, 1000)         # one fits
    group(world, 'soft-affinity', soft, 'near')
    found = plan.plan(world.context(), sources=['intel-1'],
                      destinations=['amd-2', 'amd-3'])
    assert [r.destination for r in found] == ['amd-2', 'amd-3']
    assert [r.result for r in found] == ['would-live-migrate'] * 2
    assert found[1].reason == ('soft-affinity group near: no room beside '
                               'its members on amd-2')


def test_plan_refusals_use_the_verbs_guards():
    world = fakes.World()
    floor = world.boot('intel-1', 1, prefix='floor',
                       metadata={'cpumigrate:cpu_floor': 'x86-64-v4'})
    busy = world.boot('intel-1', 1, prefix='busy')
    world.servers[busy[0].id].task_state = 'rebooting_hard'
    paused = world.boot('intel-1', 1, prefix='paused', status='PAUSED')
    stopped = world.boot('intel-1', 1, prefix='stopped', status='SHUTOFF',
                         metadata={'cpumigrate:stopped': 'x'})
    with pytest.raises(PartialFailure, match='3 of 4 servers failed') as exc:
        make(world, sources=['intel-1'])
    by_id = {r.id: r for r in exc.value.results}
    assert 'x86-64-v4' in by_id[floor[0].id].reason
    assert by_id[busy[0].id].reason.startswith('busy: ACTIVE')
    assert by_id[paused[0].id].reason == 'stays on intel-1: PAUSED'
    assert by_id[stopped[0].id].steps.startswith('start (interrupted pin)')
    ok = make(world, sources=['intel-2'])
    assert ok == []
    found = plan.build(world.context(), sources=['intel-1'],
                       destinations=['amd-1'], model='auto', flags=(),
                       finalize='now', ignore_guest_floor=True)
    assert {r.id: r for r in found.rows}[floor[0].id].result == (
        'would-live-migrate')


def test_plan_bad_hosts():
    world = fakes.World()
    with pytest.raises(WorkflowError, match='both source and destination'):
        make(world, destinations=['intel-1'])
    world.services['amd-2'].status = 'disabled'
    with pytest.raises(WorkflowError, match='amd-2 is disabled'):
        make(world)
    with pytest.raises(WorkflowError, match='unknown host'):
        make(world, sources=['nope'], destinations=['amd-1'])


def test_bandwidth_from_recent_live_migrations():
    world = fakes.World()
    [server] = world.boot('amd-1', 1)                  # 512 MB flavor
    world.records.append(_migration.Migration(
        id='m1', server_id=server.id, migration_type='live-migration',
        status='completed', source_compute='intel-1', dest_compute='amd-1',
        created_at='2026-11-27T10:00:00', updated_at='2026-11-27T10:00:04'))
    speed = plan.bandwidth(world.context(), ['intel-1'])
    assert speed.bytes_per_second == 512 * 2**20 / 4
    assert 'last 1 live' in speed.basis
    assert plan.estimate(server, speed) == 4
    empty = plan.bandwidth(world.context(), ['intel-2'])
    assert empty.bytes_per_second == plan.DEFAULT_BANDWIDTH


def test_packer_books_under_parallel_sources():
    world = fakes.World()
    servers = world.boot('intel-1', 100)
    packer = plan.Packer({'amd-1': Capacity(25, 25 * 512, 100),
                          'amd-2': Capacity(25, 25 * 512, 100)}, {}, {})
    with futures.ThreadPoolExecutor(8) as pool:
        booked = list(pool.map(lambda s: packer.book(s)[0], servers))
    assert booked.count('amd-1') == booked.count('amd-2') == 25
    assert booked.count('') == 50
    assert all(cap.vcpus == 0 and cap.ram_mb == 0
               for cap in packer.free.values())
    packer.release(servers[0], 'amd-1')
    assert packer.free['amd-1'].ram_mb == 512


def test_plan_refuses_servers_when_a_host_refuses_the_named_cpu():
    from tests.unit.test_cpuchoice import refusing

    world = fakes.World()
    [server] = world.boot('intel-1', 1)
    refusing(world.hosts['amd-1'], ['avx512f'])
    with pytest.raises(PartialFailure) as exc:
        make(world, sources=['intel-1'], destinations=['amd-1'],
             model='kvm64', flags=['AVX512F'])
    [row] = exc.value.results
    assert row.id == server.id and row.result == 'refused'
    assert 'refused by amd-1' in row.reason and 'avx512f' in row.reason
