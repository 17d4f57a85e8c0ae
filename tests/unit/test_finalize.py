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

"""finalize against a simulated cloud: logic, idempotence and error paths."""

import pytest

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import finalize
from osc_cpumigrate.workflow import rows
from tests.unit.fakes import migrated_world
from tests.unit.fakes import pinned_world


def test_finalize_restarts_pinned_guests_onto_host_cpu():
    p = migrated_world()
    ctx = p.world.context()
    found = finalize.finalize(ctx, 'amd-1')
    assert [r.result for r in found] == ['skipped', 'finalized',
                                         'finalized']
    assert found[1].cpu_before == rows.Cpu('custom', 'kvm64')
    assert found[1].cpu_after == rows.Cpu('custom', 'EPYC-Rome', ('+ss',))
    assert found[1].host == 'amd-1'
    assert p.world.guest(p.servers[0]).model == 'EPYC-Rome'
    p.world.compute.stop_server.reset_mock()
    found = finalize.finalize(ctx, 'amd-1')
    assert found[1].result == 'already-finalized'
    p.world.compute.stop_server.assert_not_called()


def test_finalize_dry_run_and_transitioned_host():
    p = migrated_world()
    ctx = p.world.context()
    found = finalize.finalize(ctx, 'amd-1', dry_run=True)
    assert found[1].result == 'would-finalize'
    assert found[1].reason == 'would restart (stop-start)'
    p.world.compute.stop_server.reset_mock()
    p.world.hosts['amd-1'].apply_transition('kvm64')
    with pytest.raises(WorkflowError, match='still holds transition'):
        finalize.finalize(ctx, 'amd-1')
    p.world.compute.stop_server.assert_not_called()


def test_finalize_leaves_servers_that_did_not_arrive_live():
    p = pinned_world(active=1, stopped=0)
    # pointed at the source by mistake: the pinned server stays pinned
    [row] = finalize.finalize(p.world.context(), 'intel-1')
    assert (row.result, row.reason) == ('skipped', 'did not arrive by live '
                                                   'migration')
    p.world.compute.stop_server.assert_called_once()     # pin's only
