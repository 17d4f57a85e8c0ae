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

"""status and host show: read-only, servers apart from their host."""

import dataclasses

from osc_cpumigrate.workflow import host_show
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import rows
from osc_cpumigrate.workflow import status
from tests.unit import fakes
from tests.unit.fakes import migrated_world


def test_status_of_a_destination_before_and_after_finalize():
    from osc_cpumigrate.workflow import finalize
    p = migrated_world()
    ctx = p.world.context()
    found = status.status(ctx, 'amd-1')
    assert [r.phase for r in found] == ['skipped', 'migrated-pinned',
                                        'migrated-pinned']
    assert found[0].reason == 'status SHUTOFF' and found[0].cpu is None
    finalize.finalize(ctx, 'amd-1')
    found = status.status(ctx, 'amd-1')
    assert [r.phase for r in found][1:] == ['finalized', 'finalized']


def test_status_on_source_phases():
    p = fakes.prepared_world(active=1, stopped=1)
    shown = []
    ctx = p.world.context(progress=shown.append)
    found = status.status(ctx, 'intel-1')
    assert [r.phase for r in found] == ['skipped', 'unpinned']
    assert {r.host for r in found} == {'intel-1'}
    assert 'holds transition settings' in shown[0]   # the host, on stderr
    pin.pin(ctx, 'intel-1')
    found = status.status(ctx, 'intel-1')
    assert found[1].phase == 'pinned'
    assert found[1].cpu == rows.Cpu('custom', 'kvm64')


def test_status_domain_unreadable_is_unknown():
    world = fakes.World()
    [server] = world.boot('intel-1', 1)
    del world.hosts['intel-1'].domains[server.id]
    [row] = status.status(world.context(), 'intel-1')
    assert row.phase == 'unknown' and 'no domain' in row.reason


def test_host_show():
    p = fakes.prepared_world(active=1, stopped=1)
    ctx = p.world.context()
    host = host_show.show_host(ctx, 'intel-1')
    assert dataclasses.asdict(host) | {'changed_at': ''} == {
        'host': 'intel-1', 'service_status': 'disabled',
        'service_state': 'up', 'disabled_reason': '',
        'nova_conf': 'transition', 'path': '/etc/nova/nova.conf',
        'cpu': {'mode': 'custom', 'model': 'kvm64', 'flags': ()},
        'original_cpu': {'mode': None, 'model': None, 'flags': ()},
        'backup': '/etc/nova/nova.conf.cpumigrate-1', 'changed_at': '',
        'destinations': 'amd-1', 'servers': 2, 'problem': ''}
    assert host.changed_at.endswith('Z')
    pin.pin(ctx, 'intel-1')
    host = host_show.show_host(ctx, 'intel-1')
    assert (host.nova_conf, host.backup, host.changed_at,
            host.destinations) == ('normal', '', '', '')
