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

"""Stopped by us, provably (workflow.stopkey): the instance actions decide
whether a SHUTOFF server carrying cpumigrate:stopped is started again."""

import datetime

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import restart
from osc_cpumigrate.workflow import stopkey
from tests.unit import fakes


def stopped_by_us(world, server):
    """What an interrupted stop-start leaves: key, stop by our user."""
    stopkey.mark(world.context(), server)
    world._stop(server)


def test_our_stop_is_started_again():
    p = fakes.prepared_world(active=1, stopped=0)
    [server] = p.servers
    stopped_by_us(p.world, server)
    [row] = pin.pin(p.world.context(), 'intel-1')
    assert row.result == 'pinned'
    assert p.world.servers[server.id].status == 'ACTIVE'
    assert stopkey.STOPPED_KEY not in p.world.servers[server.id].metadata


def test_key_set_by_the_owner_is_not_started():
    p = fakes.prepared_world(active=1, stopped=0)
    [server] = p.servers
    p.world.user = 'owner-id'                # the member stops it, sets key
    stopped_by_us(p.world, server)
    p.world.user = fakes.ADMIN
    [row] = pin.pin(p.world.context(), 'intel-1')
    assert row.result == 'skipped'
    assert 'stopped by user owner-id, not by cpumigrate' in row.reason
    assert p.world.servers[server.id].status == 'SHUTOFF'
    p.world.compute.start_server.assert_not_called()
    # the owner's key is the owner's: left alone
    assert stopkey.STOPPED_KEY in p.world.servers[server.id].metadata


def test_key_without_a_stop_or_with_a_wrong_time_is_not_started():
    world = fakes.World()
    [server] = world.boot('intel-1', status='SHUTOFF')
    server.metadata[stopkey.STOPPED_KEY] = '2026-11-27T10:00:00Z'
    ctx = world.context()
    assert stopkey.proof(ctx, server) == 'Nova records no stop of it'
    world.act(server, 'stop', when=datetime.datetime(
        2026, 11, 27, 11, 0, tzinfo=datetime.timezone.utc))
    assert 'is not the one cpumigrate recorded' in stopkey.proof(ctx, server)
    server.metadata[stopkey.STOPPED_KEY] = 'garbage'
    assert 'holds no time' in stopkey.proof(ctx, server)


def test_a_later_action_by_anyone_clears_our_key():
    world = fakes.World()
    [server] = world.boot('intel-1')
    stopped_by_us(world, server)
    world.act(server, 'reboot', user='owner-id')    # after our stop
    why = stopkey.proof(world.context(), server)
    assert why.startswith('reboot by user owner-id')
    assert 'after cpumigrate stopped it' in why
    assert stopkey.STOPPED_KEY not in server.metadata


def test_newest_stop_by_the_owner_wins():
    world = fakes.World()
    [server] = world.boot('intel-1')
    stopped_by_us(world, server)
    world.act(server, 'start', user='owner-id')
    world.act(server, 'stop', user='owner-id')
    why = stopkey.proof(world.context(), server)
    assert 'stopped by user owner-id' in why


def test_our_own_failed_start_does_not_count_against_us():
    world = fakes.World()
    [server] = world.boot('intel-1')
    stopped_by_us(world, server)
    world.act(server, 'start')               # ours, and it did not work
    assert stopkey.proof(world.context(), server) is None


def test_a_started_server_loses_our_stale_key():
    world = fakes.World()
    [server] = world.boot('intel-1')
    stopped_by_us(world, server)
    world.user = 'owner-id'
    world._start(server)
    world.user = fakes.ADMIN
    stopkey.tidy(world.context(), world.servers[server.id])
    assert stopkey.STOPPED_KEY not in world.servers[server.id].metadata


def test_a_failed_stop_clears_the_key():
    world = fakes.World()
    [server] = world.boot('intel-1')

    def refuse(s):
        from openstack import exceptions as sdk_exc
        raise sdk_exc.HttpException(message='locked', http_status=409)
    world.compute.stop_server.side_effect = refuse
    with pytest.raises(WorkflowError, match='Nova refused the stop-start'):
        restart.restart_server(world.context(), server, 'stop-start')
    assert stopkey.STOPPED_KEY not in world.servers[server.id].metadata


def test_a_start_whose_wait_runs_out_but_gets_active_succeeds():
    world = fakes.World()
    [server] = world.boot('intel-1')
    polls = []

    def slow_start(s):
        world.act(s, 'start')
        world.servers[s.id].status = 'SHUTOFF'
        world.servers[s.id].task_state = 'powering-on'

    def get(s):
        found = world.servers[world._sid(s)]
        polls.append(found.status)
        if len(polls) > 15:           # after the first wait ran out
            found.status, found.task_state = 'ACTIVE', None
        return found
    world.compute.start_server.side_effect = slow_start
    world.compute.get_server.side_effect = get
    ctx = world.context()
    ctx.server_timeout = 10
    after = restart.restart_server(ctx, server, 'stop-start')
    assert after.status == 'ACTIVE'
    assert world.compute.start_server.call_count == 1   # waited, no 2nd
    assert stopkey.STOPPED_KEY not in world.servers[server.id].metadata


def test_without_a_user_id_nothing_is_started(monkeypatch):
    from openstack import exceptions as sdk_exc
    world = fakes.World()
    [server] = world.boot('intel-1')
    stopped_by_us(world, server)
    type(world.conn).current_user_id = property(
        lambda self: (_ for _ in ()).throw(sdk_exc.ConfigException(
            'cannot fetch catalog for non-keystone auth plugin')))
    why = stopkey.proof(world.context(), server)
    assert why.startswith('cannot tell which user cpumigrate acts as')


def test_migrate_refuses_ours_but_moves_the_owners_stopped_server():
    from osc_cpumigrate.workflow import migrate
    p = fakes.pinned_world(active=1, stopped=0)
    world = p.world
    [ours] = p.servers
    stopped_by_us(world, ours)
    [owned] = world.boot('intel-1', status='SHUTOFF', prefix='owned')
    world.act(owned, 'stop', user='owner-id')
    owned.metadata[stopkey.STOPPED_KEY] = '2026-11-27T10:00:00Z'
    with pytest.raises(PartialFailure) as caught:
        migrate.migrate(world.context(), 'intel-1', destinations=['amd-1'])
    found = {r.id: r for r in caught.value.results}
    assert found[ours.id].result == 'refused'
    assert 'interrupted pin' in found[ours.id].reason
    assert found[owned.id].result == 'cold-migrated'
