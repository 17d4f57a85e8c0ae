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

"""The Cloud gateway: Placement through the SDK proxy, waits via poll."""

from __future__ import annotations

from unittest import mock

from openstack.compute.v2 import hypervisor
from openstack.compute.v2 import server as _server
from openstack.compute.v2 import service as _service
from openstack.placement.v1 import resource_provider
from openstack.placement.v1 import resource_provider_inventory
import pytest

from osc_cpumigrate.cloud import Cloud
from osc_cpumigrate.errors import Timeout
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.types import Capacity

INVENTORIES = {
    'VCPU': {'total': 8, 'reserved': 0, 'allocation_ratio': 4.0},
    'MEMORY_MB': {'total': 4096, 'reserved': 512, 'allocation_ratio': 1.0},
    'DISK_GB': {'total': 100, 'allocation_ratio': 1.0},
}
USAGES = {'VCPU': 2, 'MEMORY_MB': 1024, 'DISK_GB': 10}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_cloud(placement: mock.Mock) -> tuple[Cloud, list]:
    conn = mock.Mock()
    conn.placement = placement
    conn.compute.hypervisors.side_effect = lambda **kw: iter([
        hypervisor.Hypervisor(id='rp-1', name='amd-1.example.net',
                              service_details={'host': 'amd-1'})]
        if kw == {'details': True, 'hypervisor_hostname_pattern': 'amd-1'}
        else [])
    asked = []

    def providers(**query):
        asked.append(query)
        if query == {'name': 'amd-1.example.net'}:
            return iter([resource_provider.ResourceProvider(
                id='rp-1', name='amd-1.example.net')])
        return iter([])

    placement.resource_providers.side_effect = providers
    placement.resource_provider_inventories.side_effect = (
        lambda rp: iter([
            resource_provider_inventory.ResourceProviderInventory(
                resource_provider_id=rp.id, resource_class=rc, **inv)
            for rc, inv in INVENTORIES.items()]))
    clock = Clock()
    return Cloud(conn, clock=clock, sleep=clock.sleep), asked


def test_capacity_uses_the_hypervisors_resource_provider():
    placement = mock.Mock()
    placement.fetch_resource_provider_usages.side_effect = (
        lambda rp: resource_provider.ResourceProvider(id=rp.id,
                                                      usages=USAGES))
    cloud, asked = make_cloud(placement)
    cap = cloud.capacity('amd-1')
    assert asked[0] == {'name': 'amd-1.example.net'}
    assert cap == Capacity(30, 2560, 90)
    placement.get.assert_not_called()


def test_capacity_usages_by_raw_get_when_the_sdk_lacks_the_call():
    placement = mock.Mock(spec=['resource_providers',
                                'resource_provider_inventories', 'get'])
    placement.get.return_value = mock.Mock(status_code=200,
                                           json=lambda: {'usages': USAGES})
    cloud, _ = make_cloud(placement)
    assert cloud.capacity('amd-1') == Capacity(30, 2560, 90)
    placement.get.assert_called_once_with('/resource_providers/rp-1/usages')


def test_capacity_without_provider_names_what_it_looked_for():
    placement = mock.Mock()
    cloud, _ = make_cloud(placement)
    with pytest.raises(WorkflowError, match=r'^host amd-2 has no resource '
                       r'provider in Placement \(looked for amd-2\)$'):
        cloud.capacity('amd-2')


def service(state: str, updated_at: str | None) -> _service.Service:
    return _service.Service(host='cmp1', binary='nova-compute', state=state,
                            updated_at=updated_at)


def test_wait_service_up_needs_a_heartbeat_after_the_baseline():
    cloud, _ = make_cloud(mock.Mock())
    seen = iter([service('up', '2026-11-27T10:00:00.000000'),
                 service('down', '2026-11-27T10:00:00.000000'),
                 service('up', '2026-11-27T10:00:30.000000')])
    cloud.compute.services.side_effect = lambda **kw: iter([next(seen)])
    found = cloud.wait_service_up('cmp1', '2026-11-27T10:00:00.000000', 60)
    assert found.updated_at == '2026-11-27T10:00:30.000000'
    assert cloud.clock() == 4.0


def test_wait_service_up_timeout_names_the_last_heartbeat():
    cloud, _ = make_cloud(mock.Mock())
    cloud.compute.services.side_effect = lambda **kw: iter(
        [service('down', None)])
    with pytest.raises(Timeout, match=r'^nova-compute on cmp1 did not report '
                       r'up within 10 s \(last heartbeat never, state '
                       r'down\)$'):
        cloud.wait_service_up('cmp1', None, 10)
    assert cloud.clock() == 10.0


def server(status: str, task: str | None = None,
           fault: dict | None = None) -> _server.Server:
    return _server.Server(id='s-1', status=status, task_state=task,
                          compute_host='cmp1', fault=fault)


def test_wait_for_server_waits_for_the_task_to_end():
    cloud, _ = make_cloud(mock.Mock())
    seen = iter([server('ACTIVE', 'rebooting_hard'), server('ACTIVE')])
    cloud.compute.get_server.side_effect = lambda s: next(seen)
    assert cloud.wait_for_server(server('ACTIVE'), 'ACTIVE', 60).status == (
        'ACTIVE')
    assert cloud.clock() == 2.0


def test_wait_for_server_error_ends_the_wait_at_once():
    cloud, _ = make_cloud(mock.Mock())
    cloud.compute.get_server.return_value = server(
        'ERROR', fault={'message': 'No valid host'})
    with pytest.raises(WorkflowError,
                       match='^server s-1 went to ERROR: No valid host$'):
        cloud.wait_for_server(server('ACTIVE'), 'SHUTOFF', 60)
    assert cloud.clock() == 0.0


def test_wait_for_server_timeout_says_where_it_stood():
    cloud, _ = make_cloud(mock.Mock())
    cloud.compute.get_server.return_value = server('ACTIVE', 'powering-off')
    with pytest.raises(Timeout, match=r'^server s-1 did not reach SHUTOFF '
                       r'within 5 s \(status ACTIVE, task powering-off, '
                       r'host cmp1\)$'):
        cloud.wait_for_server(server('ACTIVE'), 'SHUTOFF', 5)
