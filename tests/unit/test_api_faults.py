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

"""Issue 11, part 9: a cloud API that misbehaves.

Reads are tried again with backoff within a budget; waits outlive
transient errors; an action that got no answer is waited on, never sent
again blindly; a Placement error is an error; a refused sign-in is one
clear line.  The lab shows the same against a real Nova
(tests/functional/test_fault_matrix.py).
"""

from unittest import mock

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
from osc_lib import exceptions as osc_exc
import pytest

from osc_cpumigrate import cloud as cloud_mod
from osc_cpumigrate import errors
from osc_cpumigrate import poll
from osc_cpumigrate.commands import settings
from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import Timeout
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import restart
from osc_cpumigrate.workflow import rows
from tests.unit import fakes


def http(status):
    return sdk_exc.HttpException(message='HTTP %d' % status,
                                 http_status=status)


def flaky(errors_first, value='ok'):
    """A call that raises each of ``errors_first`` once, then answers."""
    pending = list(errors_first)
    calls = []

    def call(*args, **kwargs):
        calls.append(args)
        if pending:
            raise pending.pop(0)
        return value
    return call, calls


@pytest.mark.parametrize('exc, transient', [
    (http(503), True), (http(502), True), (http(504), True),
    (http(500), False), (http(404), False), (http(409), False),
    (ks_exc.ConnectTimeout('timed out'), True),
    (ks_exc.ConnectFailure('refused'), True),
    (ks_exc.SSLError('bad certificate'), False),
    (ks_exc.Unauthorized('401'), False),
])
def test_what_is_transient(exc, transient):
    assert cloud_mod.transient(exc) is transient


def test_unanswered_actions_may_have_happened():
    assert cloud_mod.unanswered(ks_exc.ConnectTimeout('timed out'))
    assert cloud_mod.unanswered(http(504))
    # a proxy without a backend: the action never reached Nova
    assert not cloud_mod.unanswered(http(503))
    assert not cloud_mod.unanswered(http(409))


def test_retry_backs_off_until_the_budget_is_spent():
    clock = fakes.FakeClock()
    call, calls = flaky([http(503)] * 100)
    with pytest.raises(sdk_exc.HttpException):
        poll.retry(call, transient=cloud_mod.transient, budget=100,
                   clock=clock, sleep=clock.sleep)
    # 1, 2, 4, 8, 16, 30, 30 (=91), then the 9 s left
    assert clock() == 100
    assert len(calls) == 9


def test_retry_answers_once_the_api_is_back_and_raises_others_at_once():
    clock = fakes.FakeClock()
    call, calls = flaky([http(503), ks_exc.ConnectTimeout('t')])
    assert poll.retry(call, transient=cloud_mod.transient, budget=60,
                      clock=clock, sleep=clock.sleep) == 'ok'
    assert (len(calls), clock()) == (3, 3)
    call, calls = flaky([http(500)])
    with pytest.raises(sdk_exc.HttpException):
        poll.retry(call, transient=cloud_mod.transient, budget=60,
                   clock=clock, sleep=clock.sleep)
    assert len(calls) == 1


def test_wait_goes_on_through_transient_errors_until_its_deadline():
    clock = fakes.FakeClock()
    fetch, calls = flaky([http(503)] * 3, value='done')
    assert poll.wait_for(fetch, done=lambda v: v == 'done', timeout=60,
                         interval=2, message='m', clock=clock,
                         sleep=clock.sleep,
                         transient=cloud_mod.transient) == 'done'
    fetch, _ = flaky([http(503)] * 100)
    with pytest.raises(Timeout, match=r'^not there \(the last look at the '
                       r'cloud failed: HTTP 503\)$'):
        poll.wait_for(fetch, done=bool, timeout=10, interval=2,
                      message='not there', clock=clock, sleep=clock.sleep,
                      transient=cloud_mod.transient)
    fetch, _ = flaky([http(500)])
    with pytest.raises(sdk_exc.HttpException):
        poll.wait_for(fetch, done=bool, timeout=10, interval=2,
                      message='m', clock=clock, sleep=clock.sleep,
                      transient=cloud_mod.transient)


def test_every_request_gets_the_api_timeout():
    conn = mock.Mock()
    conn.session.timeout = None
    cloud_mod.Cloud(conn, api_timeout=7)
    assert conn.session.timeout == 7.0


def test_reads_use_the_retry_budget():
    world = fakes.World()
    [server] = world.boot('intel-1')
    cloud = world.context().cloud
    cloud.retry_time = 20
    world.compute.get_server.side_effect = [http(503)] * 3 + [server]
    assert cloud.get_server(server.id) is server
    world.compute.get_server.side_effect = http(503)
    start = world.clock()
    with pytest.raises(sdk_exc.HttpException):
        cloud.get_server(server.id)
    assert world.clock() - start == 20


def test_a_hypervisor_api_error_is_an_error_not_no_provider():
    conn = mock.Mock()
    conn.compute.hypervisors.side_effect = http(500)
    cloud = cloud_mod.Cloud(conn)
    with pytest.raises(sdk_exc.HttpException):
        cloud.resource_provider('amd-1')
    conn.placement.resource_providers.assert_not_called()
    # Nova's 404 when no hypervisor name matches: look for the host name
    conn.compute.hypervisors.side_effect = sdk_exc.NotFoundException()
    conn.placement.resource_providers.side_effect = lambda **q: iter([])
    with pytest.raises(errors.WorkflowError, match='looked for amd-1'):
        cloud.resource_provider('amd-1')


def test_a_placement_error_is_an_error():
    conn = mock.Mock()
    conn.compute.hypervisors.side_effect = lambda **q: iter([])
    conn.placement.resource_providers.side_effect = http(500)
    with pytest.raises(sdk_exc.HttpException):
        cloud_mod.Cloud(conn).capacity('amd-1')
    placement = mock.Mock(spec=['get'])
    placement.get.return_value = mock.Mock(
        status_code=500, headers={}, url='/resource_providers/rp/usages',
        reason='Internal Server Error', text='boom', json=lambda: {})
    conn.placement = placement
    with pytest.raises(sdk_exc.HttpException):
        cloud_mod.Cloud(conn).provider_usages(mock.Mock(id='rp'))
    # a trait list Placement did not give is no empty trait list (which
    # would pass every forbidden trait)
    cloud = cloud_mod.Cloud(conn)
    cloud.resource_provider = lambda host: mock.Mock(id='rp')
    with pytest.raises(sdk_exc.HttpException):
        cloud.provider_traits('amd-1')


def test_an_unanswered_stop_is_waited_on_not_sent_again():
    world = fakes.World()
    [server] = world.boot('intel-1')

    def stop_then_time_out(s):
        world._stop(s)                    # Nova did it; the answer is lost
        raise ks_exc.ConnectTimeout('Request timed out')
    world.compute.stop_server.side_effect = stop_then_time_out
    after = restart.restart_server(world.context(), server, 'stop-start')
    assert after.status == 'ACTIVE'
    assert world.compute.stop_server.call_count == 1
    assert world.compute.start_server.call_count == 1
    assert world.servers[server.id].metadata == {}


def test_an_unanswered_start_is_not_sent_twice():
    world = fakes.World()
    [server] = world.boot('intel-1')

    def start_then_time_out(s):
        world._start(s)
        raise ks_exc.ConnectTimeout('Request timed out')
    world.compute.start_server.side_effect = start_then_time_out
    after = restart.restart_server(world.context(), server, 'stop-start')
    assert after.status == 'ACTIVE'
    assert world.compute.start_server.call_count == 1


def test_an_unanswered_live_migration_is_followed_not_sent_again():
    p = fakes.pinned_world(active=1, stopped=0)
    world = p.world

    def migrate_then_time_out(s, **kw):
        world._live_migrate(s, **kw)
        raise ks_exc.ConnectTimeout('Request timed out')
    world.compute.live_migrate_server.side_effect = migrate_then_time_out
    [row] = migrate.migrate(world.context(), 'intel-1',
                            destinations=['amd-1'], timeout=60)
    assert row.result == 'live-migrated'
    assert world.compute.live_migrate_server.call_count == 1


def test_a_503_to_the_migration_request_is_a_refusal():
    p = fakes.pinned_world(active=1, stopped=0)
    p.world.compute.live_migrate_server.side_effect = http(503)
    with pytest.raises(PartialFailure) as exc:
        migrate.migrate(p.world.context(), 'intel-1',
                        destinations=['amd-1'], timeout=60)
    [row] = exc.value.results
    assert row.result == 'failed'
    assert row.reason.startswith('Nova refused the live migration: HTTP 503')


def test_5xx_while_following_a_migration_is_not_a_failed_migration():
    """The API answers 503 for longer than a read's retry budget while the
    migration runs: the follow keeps looking until its own deadline."""
    p = fakes.pinned_world(active=1, stopped=0)
    world = p.world
    world.hang_migration = True
    real = world.compute.migrations.side_effect
    outage = {'left': 0}

    def migrations(**query):
        if outage['left']:
            outage['left'] -= 1
            if outage['left'] == 0:           # the migration ended meanwhile
                for rec in world.records:
                    rec.status = 'completed'
                for s in world.servers.values():
                    s.status, s.compute_host = 'ACTIVE', 'amd-1'
            raise http(503)
        return real(**query)

    def start_outage(s, **kw):
        world._live_migrate(s, **kw)
        outage['left'] = 40                   # > the retry budget below
    world.compute.live_migrate_server.side_effect = start_outage
    world.compute.migrations.side_effect = migrations
    ctx = world.context()
    ctx.cloud.retry_time = 10
    [row] = migrate.migrate(ctx, 'intel-1', destinations=['amd-1'],
                            timeout=600)
    assert row.result == 'live-migrated'


def test_a_refused_sign_in_ends_the_run_with_the_rows_so_far():
    world = fakes.World()
    world.boot('intel-1', 2)
    refused = ks_exc.Unauthorized(
        'The request you have made requires authentication. (HTTP 401)')
    world.compute.start_server.side_effect = refused
    with pytest.raises(PartialFailure) as exc:
        restart_all(world)
    first, second = exc.value.results
    assert first.result == 'failed' and second.result == 'not-attempted'
    assert first.reason.startswith("Keystone refused cpumigrate's "
                                   "credentials (HTTP 401")
    assert 'The request you have made requires authentication' in str(
        exc.value)


def restart_all(world):
    ctx = world.context()
    host = world.hosts['intel-1']
    goal = restart.Goal(row_type=rows.PinRow, done='pinned',
                        already='already-pinned', would='would-pin',
                        cpu='a CPU', verify=lambda after: None)
    plan = restart.classify(ctx, host, list(world.servers.values()), goal,
                            settled=lambda s, g: None)
    restart.run(ctx, host, plan, goal, method='stop-start', dry_run=False)
    return common.finish(plan.rows())


def test_translate_errors_says_what_a_401_means():
    class Cmd:
        @errors.translate_errors
        def take_action(self, parsed_args):
            raise ks_exc.Unauthorized('The request you have made requires '
                                      'authentication. (HTTP 401)')
    with pytest.raises(osc_exc.CommandError, match=r"^Keystone refused "
                       r"cpumigrate's credentials \(HTTP 401: a wrong or "
                       r"changed password, or a disabled user or project\)"):
        Cmd().take_action(None)


def test_api_settings_from_the_environment_and_clouds_yaml():
    args = mock.Mock(spec=[])
    values = settings.resolve(args, {}, {})
    assert (values['api_timeout'], values['api_retry_time']) == (60.0, 180.0)
    values = settings.resolve(
        args, {'cloud': 'c', 'cpumigrate': {'api_timeout': 15}},
        {'OS_CPUMIGRATE_API_RETRY_TIME': '600'})
    assert (values['api_timeout'], values['api_retry_time']) == (15.0, 600.0)
    with pytest.raises(settings.SettingsError, match='api_timeout'):
        settings.resolve(args, {'cpumigrate': {'api_timeout': 0}}, {})


def test_idempotent_changes_are_tried_again_actions_are_not():
    world = fakes.World()
    [server] = world.boot('intel-1')
    cloud = world.context().cloud
    service = world.services['intel-1']
    real = world.compute.disable_service.side_effect
    world.compute.disable_service.side_effect = [http(503), real]
    cloud.disable_service(service, 'cpumigrate')
    assert world.compute.disable_service.call_count == 2
    world.compute.stop_server.side_effect = http(503)
    with pytest.raises(sdk_exc.HttpException):
        cloud.stop(server)
    assert world.compute.stop_server.call_count == 1
    # a key an unanswered first try already removed is removed
    world.compute.delete_server_metadata.side_effect = [
        ks_exc.ConnectTimeout('t'), sdk_exc.NotFoundException()]
    cloud.delete_metadata(server, ['cpumigrate:stopped'])
