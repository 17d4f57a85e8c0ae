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

"""The restart loop pin and finalize share (workflow.restart)."""

import pytest

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import restart
from osc_cpumigrate.workflow import rows
from osc_cpumigrate.workflow import stopkey
from tests.unit import fakes


def goal(verify=lambda after: None):
    return restart.Goal(row_type=rows.PinRow, done='pinned',
                        already='already-pinned', would='would-pin',
                        cpu='a CPU', verify=verify,
                        expected=rows.Cpu('custom', 'kvm64'))


def world_with(active=3, stopped=1):
    world = fakes.World()
    servers = world.boot('intel-1', active)
    servers += world.boot('intel-1', stopped, status='SHUTOFF',
                          prefix='off')
    return world, servers


def test_classify_sorts_servers():
    world, (a, b, c, off) = world_with()
    ctx = world.context()
    stopkey.mark(ctx, c)
    world._stop(c)                          # cpumigrate stopped it
    host = world.hosts['intel-1']

    def settled(server, guest):
        return {a.id: 'already-pinned', b.id: None}.get(server.id)
    plan = restart.classify(ctx, host, [a, b, c, off], goal(),
                            settled=settled)
    assert [s.id for s, _ in plan.todo] == [b.id, c.id]
    assert plan.todo[1][1] is None              # stopped: CPU unknown
    found = {r.id: r for r in plan.rows()}
    assert found[a.id].result == 'already-pinned'
    assert found[a.id].cpu_before == found[a.id].cpu_after
    assert (found[off.id].result, found[off.id].reason) == (
        'skipped', 'status SHUTOFF')


def test_run_restarts_one_at_a_time_and_stops_at_first_failure():
    world, servers = world_with(active=3, stopped=0)
    host = world.hosts['intel-1']
    order = []
    world.compute.reboot_server.side_effect = (
        lambda s, kind: order.append(s.id) or world._restart(s))

    def verify(after):
        return 'wrong CPU' if len(order) == 2 else None
    plan = restart.classify(world.context(), host, servers, goal(verify),
                            settled=lambda s, g: None)
    stopped = restart.run(world.context(), host, plan, goal(verify),
                          method='hard-reboot', dry_run=False)
    assert stopped
    assert order == [servers[0].id, servers[1].id]
    assert [r.result for r in plan.rows()] == ['pinned', 'failed',
                                               'not-attempted']
    assert plan.rows()[1].reason == 'wrong CPU'


def test_run_dry_run_and_refused_confirmation():
    world, servers = world_with(active=2, stopped=0)
    host = world.hosts['intel-1']
    plan = restart.classify(world.context(), host, servers, goal(),
                            settled=lambda s, g: None)
    assert not restart.run(world.context(), host, plan, goal(),
                           method='stop-start', dry_run=True)
    assert {(r.result, r.reason) for r in plan.rows()} == {
        ('would-pin', 'would restart (stop-start)')}
    assert plan.rows()[0].cpu_after == rows.Cpu('custom', 'kvm64')
    questions = []
    ctx = world.context(confirm=lambda q: questions.append(q) and False)
    with pytest.raises(WorkflowError, match='not confirmed'):
        restart.run(ctx, host, plan, goal(), method='hard-reboot',
                    dry_run=False)
    assert 'restart 2 server(s) on intel-1 (hard-reboot: this CUTS THE ' \
        'POWER of each guest' in questions[0]
    world.compute.reboot_server.assert_not_called()


def test_stop_start_marks_and_unmarks_the_server():
    world, [server] = world_with(active=1, stopped=0)
    seen = []
    world.compute.stop_server.side_effect = (
        lambda s: seen.append(dict(world.servers[s.id].metadata))
        or world._stop(s))
    after = restart.restart_server(world.context(), server, 'stop-start')
    assert after.status == 'ACTIVE'
    assert restart.STOPPED_KEY in seen[0]
    assert world.servers[server.id].metadata == {}


def test_stopped_by_us():
    world, [server] = world_with(active=1, stopped=0)
    assert not restart.stopped_by_us(server)
    server.status = 'SHUTOFF'
    assert not restart.stopped_by_us(server)       # the customer's own
    server.metadata[restart.STOPPED_KEY] = '2026-11-27T10:00:00Z'
    assert restart.stopped_by_us(server)
