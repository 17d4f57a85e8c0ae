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

"""Restart pending is a state; restarts need a live nova-compute; the
original is restorable before the first restart (issue 11, parts 4-5)."""

import datetime

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import finalize
from osc_cpumigrate.workflow import host_show
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import prepare
from osc_cpumigrate.workflow import status
from tests.unit import fakes


def killed_after_restore(p):
    """pin restored nova.conf, then died before nova-compute restarted."""
    host = p.world.hosts['intel-1']
    host.restart_nova_compute = lambda: (_ for _ in ()).throw(
        KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as caught:
        pin.pin(p.world.context(), 'intel-1')
    del host.restart_nova_compute
    return host, caught.value


def test_restart_pending_is_shown_and_the_next_pin_restarts():
    p = fakes.prepared_world(active=2, stopped=0)
    host, exc = killed_after_restore(p)
    assert 'interrupted while restoring nova.conf' in exc.in_flight
    assert [r.result for r in exc.results] == ['pinned', 'pinned']
    ctx = p.world.context()
    assert host_show.show_host(ctx, 'intel-1').nova_conf == 'restart pending'
    said = []
    status.status(p.world.context(progress=said.append), 'intel-1')
    assert 'restart pending' in said[0]
    host.started_at -= datetime.timedelta(seconds=1)   # same-second clocks
    found = pin.pin(ctx, 'intel-1')
    assert [r.result for r in found] == ['already-pinned'] * 2
    assert host.calls[-1] == 'restart_nova_compute'
    assert host_show.show_host(ctx, 'intel-1').nova_conf == 'normal'
    assert host.loaded == host.original


def test_not_pending_when_the_start_time_is_unknown():
    p = fakes.pinned_world(active=1, stopped=0)
    host = p.world.hosts['intel-1']
    conf = host.nova_conf()
    assert not common.restart_pending(host, conf)
    host.started_at = None
    host.restored = fakes.now()
    assert not common.restart_pending(host, conf)


def compute_down(world, name='intel-1'):
    host = world.hosts[name]
    host.running = False
    world.services[name].state = 'down'


def test_no_restart_while_nova_compute_is_down():
    p = fakes.prepared_world(active=2, stopped=0)
    compute_down(p.world)
    with pytest.raises(PartialFailure) as caught:
        pin.pin(p.world.context(), 'intel-1')
    found = caught.value.results
    assert [r.result for r in found] == ['failed', 'not-attempted']
    assert 'nova-compute on intel-1 is down' in found[0].reason
    p.world.compute.stop_server.assert_not_called()
    assert p.world.hosts['intel-1'].transitioned


def test_finalize_restarts_nothing_while_nova_compute_is_down():
    p = fakes.migrated_world()
    compute_down(p.world, 'amd-1')
    p.world.compute.stop_server.reset_mock()
    with pytest.raises(PartialFailure) as caught:
        finalize.finalize(p.world.context(), 'amd-1')
    assert 'failed' in [r.result for r in caught.value.results]
    p.world.compute.stop_server.assert_not_called()


def test_prepare_rerun_fails_when_nova_compute_is_down():
    p = fakes.prepared_world(active=1, stopped=0)
    compute_down(p.world)
    with pytest.raises(WorkflowError, match='intel-1 is not ready: '
                       'nova-compute on intel-1 is down'):
        prepare.prepare(p.world.context(), 'intel-1', model='kvm64')
    with pytest.raises(WorkflowError, match='not ready'):
        prepare.prepare(p.world.context(), 'intel-1', model='kvm64',
                        dry_run=True)


def test_pin_restarts_nothing_when_the_original_is_not_restorable():
    p = fakes.prepared_world(active=2, stopped=0)
    p.world.hosts['intel-1'].unrestorable = '/etc/nova is not writable'
    with pytest.raises(WorkflowError, match='no server on intel-1 was '
                       'restarted: .* /etc/nova is not writable'):
        pin.pin(p.world.context(), 'intel-1')
    p.world.compute.stop_server.assert_not_called()


def test_a_backup_problem_is_named_and_pin_goes_on():
    p = fakes.prepared_world(active=1, stopped=0)
    host = p.world.hosts['intel-1']
    host.problem = ('cannot read /etc/nova/nova.conf.cpumigrate-1; the '
                    'original CPU lines kept in the marker comment stand in')
    said = []
    found = pin.pin(p.world.context(progress=said.append), 'intel-1')
    assert [r.result for r in found] == ['pinned']
    assert any('marker comment stand in' in s for s in said)
    assert host_show.show_host(p.world.context(), 'intel-1').problem == ''
