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

"""prepare against a simulated cloud: logic, idempotence and error paths."""

import pytest

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import prepare
from osc_cpumigrate.workflow import rows
from tests.unit import fakes


def test_prepare_disables_writes_restarts():
    world = fakes.World()
    host = world.hosts['intel-1']
    [row] = prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert row.result == 'prepared'
    assert row.reason == ('disable service, write nova.conf, restart '
                          'nova-compute')
    assert row.cpu_after == rows.Cpu('custom', 'kvm64')
    assert row.backup == '/etc/nova/nova.conf.cpumigrate-1'
    assert (row.service_status, row.service_state) == ('disabled', 'up')
    assert 'osc-cpumigrate' in row.disabled_reason
    service = world.services['intel-1']
    assert service.status == 'disabled'
    assert 'osc-cpumigrate' in service.disabled_reason
    assert host.calls.count('apply_transition') == 1
    assert host.calls.count('restart_nova_compute') == 1
    assert host.loaded.model == 'kvm64'
    assert host.closed


def test_prepare_rerun_changes_nothing():
    world = fakes.World()
    ctx = world.context()
    prepare.prepare(ctx, 'intel-1', model='kvm64')
    host = world.hosts['intel-1']
    host.calls.clear()
    [row] = prepare.prepare(ctx, 'intel-1', model='kvm64')
    assert row.result == 'already-prepared'
    assert 'apply_transition' not in host.calls
    assert 'restart_nova_compute' not in host.calls


def test_prepare_records_destinations_and_a_new_set_restarts_nothing():
    """pin takes the destinations prepare was given; naming others later
    rewrites the marker only: the CPU is the same, nova-compute keeps
    running."""
    world = fakes.World()
    ctx = world.context()
    host = world.hosts['intel-1']
    prepare.prepare(ctx, 'intel-1', model='kvm64', destinations=['amd-1'])
    assert host.nova_conf().destinations == ('amd-1',)
    written = host.changed_at
    host.calls.clear()
    [row] = prepare.prepare(ctx, 'intel-1', model='kvm64',
                            destinations=['amd-1', 'amd-2'])
    assert row.reason == 'write nova.conf'
    assert host.nova_conf().destinations == ('amd-1', 'amd-2')
    assert host.changed_at == written
    assert 'restart_nova_compute' not in host.calls
    host.calls.clear()
    [row] = prepare.prepare(ctx, 'intel-1', model='kvm64')   # none named
    assert row.result == 'already-prepared'
    assert host.nova_conf().destinations == ('amd-1', 'amd-2')
    assert 'apply_transition' not in host.calls


def test_prepare_rerun_after_interrupted_restart_restarts():
    world = fakes.World()
    host = world.hosts['intel-1']
    host.apply_transition('kvm64')          # written, never restarted
    [row] = prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert row.result == 'prepared'
    assert host.calls.count('apply_transition') == 1
    assert host.loaded.model == 'kvm64'


def test_prepare_dry_run_changes_nothing():
    world = fakes.World()
    host = world.hosts['intel-1']
    shown = []
    ctx = world.context(progress=shown.append)
    [row] = prepare.prepare(ctx, 'intel-1', model='kvm64', flags=('pcid',),
                            dry_run=True)
    assert row.result == 'would-prepare'
    assert row.reason == ('would disable service, write nova.conf, '
                          'restart nova-compute')
    assert row.cpu_after == rows.Cpu('custom', 'kvm64', ('+pcid',))
    assert row.cpu_before == rows.Cpu(None, None)
    assert world.services['intel-1'].status == 'enabled'
    assert not host.transitioned
    assert 'restart_nova_compute' not in host.calls
    assert any('+++' in s for s in shown)        # the diff went to progress


def test_prepare_restores_when_compute_does_not_come_back():
    world = fakes.World()
    host = world.hosts['intel-1']
    host.fail_start = True
    real_restart = host.restart_nova_compute

    def restart():
        # the old process reports once more while systemd stops it: a
        # heartbeat newer than the moment the restart was asked for
        world.heartbeat('intel-1')
        real_restart()
        host.fail_start = False     # the original config starts again
    host.restart_nova_compute = restart
    with pytest.raises(WorkflowError) as exc:
        prepare.prepare(world.context(), 'intel-1', model='Haswell')
    msg = str(exc.value)
    assert 'did not report up' in msg
    assert 'original nova.conf was restored' in msg
    assert 'enabled again' in msg
    assert not host.transitioned
    assert host.calls.count('restore_original') == 1
    assert world.services['intel-1'].status == 'enabled'


def test_prepare_unknown_host_changes_nothing():
    world = fakes.World()
    with pytest.raises(WorkflowError, match="unknown host 'nope'"):
        prepare.prepare(world.context(), 'nope', model='kvm64')
    assert all(s.status == 'enabled' for s in world.services.values())


def test_prepare_unreadable_conf_changes_nothing():
    world = fakes.World()
    world.hosts['intel-1'].unreadable = True
    from osc_cpumigrate.errors import HostError
    with pytest.raises(HostError, match='cannot read'):
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert world.services['intel-1'].status == 'enabled'
    world.compute.disable_service.assert_not_called()


def test_prepare_resolves_auto_itself():
    world = fakes.World()
    [row] = prepare.prepare(world.context(), 'intel-1',
                            destinations=['amd-1'])
    assert row.result == 'prepared'
    assert row.cpu_after.model not in ('kvm64', 'qemu64')
    with pytest.raises(WorkflowError, match='give --destination'):
        prepare.prepare(world.context(), 'intel-2')
    assert world.services['intel-2'].status == 'enabled'


def test_prepare_writes_libvirts_spelling_and_says_when_nova_skips_its_check(
        caplog):
    world = fakes.World()
    host = world.hosts['intel-1']
    host.conf_options = {'skip_cpu_compare_at_startup': True}
    [row] = prepare.prepare(world.context(), 'intel-1', model='KVM64',
                            flags=['SSE4_2'], destinations=['amd-1'])
    assert row.cpu_after == rows.Cpu('custom', 'kvm64', ('+sse4.2',))
    assert host.loaded.extra_flags == ('sse4.2',)
    assert row.reason.endswith(
        'Nova skips its CPU check at start ([workarounds] '
        'skip_cpu_compare_at_startup = True): only cpumigrate\'s '
        'hypervisor-cpu-compare proved the transition CPU')
    assert 'Nova skips its CPU check' in caplog.text
    assert world.hosts['amd-1'].compared         # proven there too


def test_prepare_refused_cpu_changes_nothing():
    from tests.unit.test_cpuchoice import refusing

    world = fakes.World()
    refusing(world.hosts['intel-1'], ['avx512f'])
    with pytest.raises(WorkflowError, match='refused by intel-1'):
        prepare.prepare(world.context(), 'intel-1', model='kvm64',
                        flags=['avx512f'])
    host = world.hosts['intel-1']
    assert 'apply_transition' not in host.calls
    assert world.services['intel-1'].status == 'enabled'
