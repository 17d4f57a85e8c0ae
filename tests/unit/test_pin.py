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

"""pin against a simulated cloud: logic, idempotence and error paths."""

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import cpuchoice
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import rows
from tests.unit import fakes


def results(found):
    return [r.result for r in found]


def test_pin_restarts_active_servers_and_restores_conf():
    p = fakes.prepared_world(active=2, stopped=1)
    host = p.world.hosts['intel-1']
    found = pin.pin(p.world.context(), 'intel-1')
    assert results(found) == ['skipped', 'pinned', 'pinned']
    assert found[0].reason == 'status SHUTOFF'
    assert found[1].cpu_before == rows.Cpu('custom', 'Skylake-Server-IBRS',
                                           ('+ss',))
    assert found[1].cpu_after == rows.Cpu('custom', 'kvm64')
    assert {r.host for r in found} == {'intel-1'}
    assert all(p.world.guest(s).model == 'kvm64' for s in p.servers[:2])
    assert not host.transitioned
    assert host.loaded.mode is None        # restarted with the original
    assert p.world.compute.stop_server.call_count == 2


def test_pin_without_destinations_restarts_nobody():
    """Neither --destination nor prepare's record: no server's migration
    can be checked, so none is restarted and nova.conf stays as it is."""
    world = fakes.World()
    world.boot('intel-1', 2)
    host = world.hosts['intel-1']
    host.apply_transition('kvm64')
    host.restart_nova_compute()
    with pytest.raises(WorkflowError, match=(
            r'^no server on intel-1 was restarted: .*give --destination '
            r'\(prepare intel-1 recorded none\)$')):
        pin.pin(world.context(), 'intel-1')
    world.compute.stop_server.assert_not_called()
    world.compute.reboot_server.assert_not_called()
    assert host.transitioned
    found = pin.pin(world.context(), 'intel-1', destinations=['amd-1'])
    assert results(found) == ['pinned', 'pinned']


def test_pin_checks_the_destinations_prepare_recorded():
    """prepared_world's prepare named amd-1: pin asks amd-1's libvirt
    about each live CPU, and says so."""
    p = fakes.prepared_world(active=1, stopped=0)
    said, opened = [], []
    ctx = p.world.context(progress=said.append)
    real_open = ctx.open_host
    ctx.open_host = lambda name, opts: opened.append(name) or real_open(
        name, opts)
    found = pin.pin(ctx, 'intel-1')
    assert results(found) == ['pinned']
    assert p.world.hosts['amd-1'].compared
    # one SSH session to amd-1 serves the live-CPU judge and the gate
    assert opened.count('amd-1') == 1
    assert ('intel-1: checking migrations to amd-1, the destinations '
            'prepare was given') in said
    p.world.hosts['amd-1'].refuse_compare = True      # a refusing amd-1
    p.world.hosts['intel-1'].apply_transition('kvm64',
                                              destinations=['amd-1'])
    p.world.hosts['intel-1'].restart_nova_compute()
    with pytest.raises(PartialFailure) as exc:
        pin.pin(p.world.context(), 'intel-1')
    assert results(exc.value.results) == ['refused']
    assert 'amd-1' in exc.value.results[0].reason


def test_pin_compares_each_live_cpu_once_per_destination():
    """Both servers come back with one <cpu>: amd-1's libvirt is asked
    about it once (and once about the transition CPU, by the gate)."""
    p = fakes.prepared_world(active=2, stopped=0)
    found = pin.pin(p.world.context(), 'intel-1')
    assert results(found) == ['pinned', 'pinned']
    assert len(p.world.hosts['amd-1'].compared) == 2


def test_pin_hard_reboot_method():
    p = fakes.prepared_world(active=1, stopped=0)
    pin.pin(p.world.context(), 'intel-1', method='hard-reboot')
    p.world.compute.reboot_server.assert_called_once()
    p.world.compute.stop_server.assert_not_called()
    assert p.world.guest(p.servers[0]).model == 'kvm64'


def test_pin_rerun_changes_nothing():
    p = fakes.prepared_world(active=2, stopped=0)
    ctx = p.world.context()
    pin.pin(ctx, 'intel-1')
    p.world.compute.stop_server.reset_mock()
    found = pin.pin(ctx, 'intel-1')
    assert set(results(found)) == {'already-pinned'}
    assert found[0].cpu_before == found[0].cpu_after
    p.world.compute.stop_server.assert_not_called()


def test_pin_needs_prepare():
    world = fakes.World()
    world.boot('intel-1', 2)
    with pytest.raises(WorkflowError, match='not prepared'):
        pin.pin(world.context(), 'intel-1')
    world.compute.stop_server.assert_not_called()


def test_pin_needs_restart_after_transition():
    world = fakes.World()
    world.boot('intel-1', 1)
    world.hosts['intel-1'].apply_transition('kvm64')   # not restarted
    with pytest.raises(WorkflowError, match='has not been restarted'):
        pin.pin(world.context(), 'intel-1')
    world.compute.stop_server.assert_not_called()


def test_pin_server_not_on_host():
    p = fakes.prepared_world(active=1, stopped=0)
    other = p.world.boot('intel-2', 1)[0]
    with pytest.raises(WorkflowError, match='is on intel-2'):
        pin.pin(p.world.context(), 'intel-1', servers=[other.name])
    p.world.compute.stop_server.assert_not_called()


def test_pin_dry_run_and_refusal_without_approval():
    p = fakes.prepared_world(active=2, stopped=0)
    found = pin.pin(p.world.context(), 'intel-1', dry_run=True)
    assert set(results(found)) == {'would-pin'}
    assert found[0].reason == 'would restart (stop-start)'
    assert found[0].cpu_after == rows.Cpu('custom', 'kvm64')
    ctx = p.world.context(confirm=lambda q: False)
    with pytest.raises(WorkflowError, match='not confirmed'):
        pin.pin(ctx, 'intel-1')
    p.world.compute.stop_server.assert_not_called()
    assert p.world.hosts['intel-1'].transitioned


def test_pin_failed_restart_stops_and_keeps_transition():
    p = fakes.prepared_world(active=3, stopped=0)
    world = p.world

    def broken(server):
        world.servers[server.id].status = 'ERROR'
        world.servers[server.id].fault = {'message': 'boom'}
    world.compute.stop_server.side_effect = broken
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1')
    found = exc.value.results
    assert results(found) == ['failed', 'not-attempted', 'not-attempted']
    assert 'boom' in found[0].reason
    assert str(exc.value).startswith('1 of 3 servers failed (vm-1: ')
    assert world.hosts['intel-1'].transitioned     # a re-run carries on


def test_pin_guest_floor_refuses_but_restores(monkeypatch):
    p = fakes.prepared_world(active=2, stopped=0)
    first = p.servers[0]

    def floor(server, settings, host):
        return 'needs x86-64-v2' if server.id == first.id else None
    monkeypatch.setattr(cpuchoice, 'floor_guard', lambda ctx: floor)
    with pytest.raises(PartialFailure) as exc:
        pin.pin(p.world.context(), 'intel-1')
    found = exc.value.results
    assert (found[0].result, found[0].reason) == ('refused',
                                                  'needs x86-64-v2')
    assert found[1].result == 'pinned'
    assert p.world.guest(first).model == 'Skylake-Server-IBRS'
    assert not p.world.hosts['intel-1'].transitioned
    # --ignore-guest-floor: the workflow builds no floor guard at all
    monkeypatch.setattr(cpuchoice, 'floor_guard', None)
    p.world.hosts['intel-1'].apply_transition('kvm64')
    p.world.hosts['intel-1'].restart_nova_compute()
    found = pin.pin(p.world.context(), 'intel-1', ignore_guest_floor=True,
                    destinations=['amd-1'])
    assert results(found) == ['pinned', 'already-pinned']


def test_stop_start_never_leaves_a_server_silently_stopped():
    from openstack import exceptions as sdk_exc
    p = fakes.prepared_world(active=1, stopped=0)
    world = p.world
    world.compute.start_server.side_effect = sdk_exc.HttpException(
        message='conflict', http_status=409)
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1', method='stop-start')
    assert world.compute.start_server.call_count == 2      # tried again
    assert 'was stopped by cpumigrate' in str(exc.value)
    assert 'openstack server start' in str(exc.value)
    assert world.hosts['intel-1'].transitioned            # re-run carries on


def test_pin_busy_server_fails_and_keeps_transition():
    p = fakes.prepared_world(active=2, stopped=0)
    world = p.world
    world.servers[p.servers[0].id].status = 'HARD_REBOOT'
    world.servers[p.servers[0].id].task_state = 'rebooting_hard'
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1')
    found = exc.value.results
    assert found[0].result == 'refused'
    assert found[0].reason.startswith('busy: HARD_REBOOT')
    assert found[1].result == 'pinned'
    assert world.hosts['intel-1'].transitioned


def test_pin_one_server_keeps_transition_for_the_others():
    p = fakes.prepared_world(active=2, stopped=0)
    world = p.world
    found = pin.pin(world.context(), 'intel-1', servers=[p.servers[0].name])
    assert results(found) == ['pinned']
    assert found[0].id == p.servers[0].id
    assert world.hosts['intel-1'].transitioned
    pin.pin(world.context(), 'intel-1', servers=[p.servers[1].name])
    assert not world.hosts['intel-1'].transitioned


def test_a_server_an_interrupted_stop_start_left_stopped_is_started():
    p = fakes.prepared_world(active=2, stopped=1)
    world = p.world
    first, second, off = p.servers
    real_start = world.compute.start_server.side_effect

    def crash(server):             # the run dies between stop and start
        raise KeyboardInterrupt
    world.compute.start_server.side_effect = crash
    with pytest.raises(KeyboardInterrupt):
        pin.pin(world.context(), 'intel-1', method='stop-start')
    assert world.servers[first.id].status == 'SHUTOFF'
    assert 'cpumigrate:stopped' in world.servers[first.id].metadata
    # migrate will not carry it off stopped
    with pytest.raises(PartialFailure, match='stopped by an interrupted pin'):
        migrate.migrate(world.context(), 'intel-1', destinations=['amd-1'],
                        timeout=60, dry_run=True)
    world.compute.start_server.side_effect = real_start
    found = pin.pin(world.context(), 'intel-1', method='stop-start')
    by_id = {r.id: r.result for r in found}
    assert by_id[first.id] == 'pinned'
    assert by_id[second.id] == 'pinned'
    assert by_id[off.id] == 'skipped'               # the customer's own
    assert world.servers[first.id].status == 'ACTIVE'
    assert world.servers[first.id].metadata == {}
    assert world.guest(world.servers[first.id]).model == 'kvm64'


def test_pin_protects_rhel9_guest_from_kvm64():
    world = fakes.World()
    world.images['rhel9'] = {'os_distro': 'rhel', 'os_version': '9.4'}
    rhel = world.boot('intel-1', 1, image='rhel9', prefix='rhel')[0]
    plain = world.boot('intel-1', 1)[0]
    world.hosts['intel-1'].apply_transition('kvm64', destinations=['amd-1'])
    world.hosts['intel-1'].restart_nova_compute()
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1')
    by_id = {r.id: r for r in exc.value.results}
    assert by_id[rhel.id].result == 'refused'
    assert by_id[rhel.id].reason.startswith('its guest needs x86-64-v2')
    assert 'sse4.2' in by_id[rhel.id].reason
    assert by_id[plain.id].result == 'pinned'
    assert world.guest(rhel).model == 'Skylake-Server-IBRS'   # untouched
    # each image read once: the guest floors and the gate share it
    assert sorted(c.args[0] for c in
                  world.conn.image.get_image.call_args_list) == sorted(
        {rhel.image['id'], plain.image['id']})


def test_floor_met_by_auto_cpu_and_override():
    world = fakes.World()
    world.images['rhel9'] = {'os_distro': 'rhel', 'os_version': '9'}
    rhel = world.boot('intel-1', 1, image='rhel9')[0]
    ctx = world.context()
    model, flags = cpuchoice.choose(ctx, 'intel-1', ['amd-1'], 'auto', [])
    host = world.hosts['intel-1']
    host.apply_transition(model, flags, destinations=['amd-1'])
    host.restart_nova_compute()
    found = pin.pin(ctx, 'intel-1')
    assert found[0].result == 'pinned'
    assert world.guest(rhel).model == model


def test_pinned_by_comparison_on_the_destinations():
    """With destinations, pinned means their libvirt accepts the live CPU:
    a restart whose CPU a destination refuses fails its row; a server whose
    CPU they accept is left alone even if nova.conf now says otherwise."""
    from tests.unit.test_cpuchoice import refusing

    p = fakes.prepared_world(active=1, stopped=0)
    ctx = p.world.context()
    refusing(p.world.hosts['amd-1'], ['pcid'])
    p.world.hosts['intel-1'].file = p.world.hosts['intel-1'].loaded = (
        rows.CpuSettings('custom', ('kvm64',), ('pcid',)))
    with pytest.raises(PartialFailure) as failed:
        pin.pin(ctx, 'intel-1', destinations=['amd-1'])
    [row] = failed.value.results
    # the gate refuses it before any restart: the CPU it would get is
    # refused by the only destination
    assert row.result == 'refused' and 'pcid' in row.reason, row.reason
    p.world.compute.stop_server.assert_not_called()
    p2 = fakes.prepared_world(active=1, stopped=0)
    ctx = p2.world.context()
    pin.pin(ctx, 'intel-1', destinations=['amd-1'])
    host = p2.world.hosts['intel-1']
    host.transitioned, host.file = True, rows.CpuSettings(
        'custom', ('Westmere',))
    p2.world.compute.stop_server.reset_mock()
    [row] = pin.pin(ctx, 'intel-1', destinations=['amd-1'])
    assert row.result == 'already-pinned'
    p2.world.compute.stop_server.assert_not_called()
