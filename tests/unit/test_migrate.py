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

"""migrate against a simulated cloud: logic, idempotence and error paths."""

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import migrate
from tests.unit import fakes
from tests.unit.fakes import pinned_world


def run(ctx, source, dests, **kwargs):
    kwargs.setdefault('timeout', 60)
    return migrate.migrate(ctx, source, destinations=dests, **kwargs)


def test_migrate_live_and_cold():
    p = pinned_world()
    found = run(p.world.context(), 'intel-1', ['amd-1', 'amd-2'])
    assert sorted(r.result for r in found) == [
        'cold-migrated', 'live-migrated', 'live-migrated']
    # spread by free capacity: the two live ones go to different hosts
    assert {r.destination for r in found} == {'amd-1', 'amd-2'}
    assert all(r.host == r.destination and r.source == 'intel-1'
               for r in found)
    assert [r.status for r in found] == ['SHUTOFF', 'ACTIVE', 'ACTIVE']
    for s in p.servers:
        assert p.world.servers[s.id].compute_host.startswith('amd')
    off = p.world.servers[p.servers[-1].id]
    assert off.status == 'SHUTOFF'
    p.world.compute.live_migrate_server.assert_called_with(
        p.servers[1], host=found[2].destination, block_migration='auto')


def test_migrate_refuses_unpinned_and_bad_destinations():
    world = fakes.World()
    world.boot('intel-1', 1)
    ctx = world.context()
    with pytest.raises(PartialFailure) as exc:
        run(ctx, 'intel-1', ['amd-1'])
    [row] = exc.value.results
    assert row.result == 'refused'
    assert row.reason.startswith('not pinned')
    assert (row.host, row.destination) == ('intel-1', '')
    world.compute.live_migrate_server.assert_not_called()
    with pytest.raises(WorkflowError, match='source itself'):
        run(ctx, 'intel-1', ['intel-1'])
    world.services['amd-1'].status = 'disabled'
    with pytest.raises(WorkflowError, match='amd-1 is disabled'):
        run(ctx, 'intel-1', ['amd-1'])
    world.hosts['amd-2'].running = False
    world.services['amd-2'].state = 'down'
    with pytest.raises(WorkflowError, match='amd-2 is down'):
        run(ctx, 'intel-1', ['amd-2'])
    with pytest.raises(WorkflowError, match='unknown host'):
        run(ctx, 'intel-1', ['amd-9'])


def test_migrate_failure_stops_with_reason_from_events():
    p = pinned_world(active=2, stopped=0)
    p.world.fail_migration = ("Unacceptable CPU info: CPU doesn't have "
                              "compatibility.")
    with pytest.raises(PartialFailure) as exc:
        run(p.world.context(), 'intel-1', ['amd-1'])
    found = exc.value.results
    assert found[0].result == 'failed'
    assert 'Unacceptable CPU info' in found[0].reason
    assert found[0].host == 'intel-1'
    assert found[1].result == 'not-attempted'
    assert 'Unacceptable CPU info' in str(exc.value)
    assert all(p.world.servers[s.id].compute_host == 'intel-1'
               for s in p.servers)


def test_migrate_timeout_aborts():
    p = pinned_world(active=1, stopped=0)
    p.world.hang_migration = True
    with pytest.raises(PartialFailure) as exc:
        run(p.world.context(), 'intel-1', ['amd-1'], timeout=10)
    assert p.world.aborted == [p.servers[0].id]
    assert 'cancelled' in exc.value.results[0].reason


def test_migrate_dry_run_and_rerun():
    p = pinned_world()
    ctx = p.world.context()
    found = run(ctx, 'intel-1', ['amd-1'], dry_run=True)
    assert sorted(r.result for r in found) == [
        'would-cold-migrate', 'would-live-migrate', 'would-live-migrate']
    p.world.compute.live_migrate_server.assert_not_called()
    run(ctx, 'intel-1', ['amd-1'])
    assert run(ctx, 'intel-1', ['amd-1']) == []


def test_migrate_no_room():
    p = pinned_world(active=1, stopped=0)
    p.world.capacity['amd-1'] = fakes.Capacity(0, 0, 0)
    with pytest.raises(PartialFailure, match='no destination has room'):
        run(p.world.context(), 'intel-1', ['amd-1'])


def test_polling_survives_transient_api_errors():
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as sdk_exc
    p = pinned_world(active=1, stopped=0)
    world = p.world
    real = world.compute.migrations.side_effect
    errors = [ks_exc.ConnectFailure('Connection reset by peer'),
              sdk_exc.HttpException(message='bad gateway', http_status=502)]

    def flaky(**query):
        if errors:
            raise errors.pop(0)
        return real(**query)
    world.compute.migrations.side_effect = flaky
    found = run(world.context(), 'intel-1', ['amd-1'])
    assert found[0].result == 'live-migrated'
    assert errors == []
    world.compute.migrations.side_effect = sdk_exc.HttpException(
        message='nope', http_status=500)
    with pytest.raises(sdk_exc.HttpException):
        world.context().cloud.migrations(p.servers[0], 'live-migration')


def test_migrate_confirms_cold_migration_an_interrupted_run_left():
    p = pinned_world(active=0, stopped=1)
    world = p.world
    off = p.servers[0]
    world.compute.migrate_server(off, host='amd-1')        # then interrupted
    assert world.servers[off.id].status == 'VERIFY_RESIZE'
    found = run(world.context(), 'intel-1', ['amd-2'])
    assert [(r.destination, r.result) for r in found] == [
        ('amd-1', 'cold-migrated')]
    assert world.servers[off.id].status == 'SHUTOFF'
    world.compute.migrate_server.assert_called_once()      # not again


def test_migrate_fails_for_servers_it_cannot_move():
    p = pinned_world(active=1, stopped=0)
    world = p.world
    paused = world.boot('intel-1', 1, prefix='paused')[0]
    world.servers[paused.id].status = 'PAUSED'
    with pytest.raises(PartialFailure, match='stays on intel-1: PAUSED'):
        run(world.context(), 'intel-1', ['amd-1'])
    assert world.servers[p.servers[0].id].compute_host == 'amd-1'


def test_migrate_abort_refused_keeps_following():
    from openstack import exceptions as sdk_exc
    p = pinned_world(active=1, stopped=0)
    world = p.world
    world.hang_migration = True
    world.compute.abort_server_migration.side_effect = (
        sdk_exc.HttpException(message='not abortable', http_status=400))
    shown = []
    with pytest.raises(PartialFailure, match='did not finish'):
        run(world.context(progress=shown.append), 'intel-1', ['amd-1'],
            timeout=10)
    assert any('abort refused' in line for line in shown)


def test_migrate_reports_progress_with_memory():
    from openstack.compute.v2 import server_migration
    p = pinned_world(active=1, stopped=0)
    world = p.world
    world.hang_migration = True
    polls = []

    def progress(server):
        polls.append(1)
        if len(polls) == 3:          # the migration ends after a while
            for rec in world.records:
                rec.status = 'completed'
            s = world.servers[server.id]
            world.hosts['amd-1'].domains[s.id] = world.hosts[
                'intel-1'].domains.pop(s.id)
            s.status, s.compute_host = 'ACTIVE', 'amd-1'
        return iter([server_migration.ServerMigration(
            id='1', memory_total_bytes=2 * 2**30,
            memory_processed_bytes=len(polls) * 2**29)])
    world.compute.server_migrations.side_effect = progress
    shown = []
    found = run(world.context(progress=shown.append), 'intel-1', ['amd-1'],
                timeout=600)
    assert found[0].result == 'live-migrated'
    lines = [s for s in shown if 'migrating for' in s]
    assert lines and 'memory 512/2048 MiB' in lines[0]
    assert lines[0].startswith(p.servers[0].name)
