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

"""The gate: every rule, and pin, migrate, finalize and check using it."""

import dataclasses
import types

from openstack.compute.v2 import server_group as _server_group
from openstack.network.v2 import port as _port
import pytest

from osc_cpumigrate.cpu.cpumap import CpuMap
from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.types import CompareResult
from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import HostCpu
from osc_cpumigrate.workflow import check
from osc_cpumigrate.workflow import finalize
from osc_cpumigrate.workflow import gate
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import rows
from tests.unit import fakes
from tests.unit.cpu.conftest import read_map_files

AVX2 = {'trait:HW_CPU_X86_AVX2': 'required'}


def specs(server, **extra):
    server.flavor = {'vcpus': 2, 'ram': 512, 'disk': 1,
                     'extra_specs': dict(extra)}
    return server


def group(world, policy, members, name='g'):
    world.groups.append(_server_group.ServerGroup(
        id=name, name=name, policy=policy, member_ids=[s.id for s in members]))


class Target:
    """A destination's facts without a host."""

    def __init__(self, name='amd-1', *, zone='nova', machines=(),
                 cells=None, traits=(), free=None, compatible=True):
        self.name, self.zone = name, zone
        self.cpu = HostCpu('x86_64', 'AMD', 'EPYC-Rome', frozenset(),
                           machines=frozenset(machines), numa_cells=cells)
        self._traits, self._free = frozenset(traits), free or {}
        self.compatible = compatible

    def compare(self, xml):
        return CompareResult(self.compatible, 'superset' if self.compatible
                             else 'incompatible', 'Host CPU does not '
                             'provide required features: avx512f')

    def traits(self):
        return self._traits

    def free(self, rc):
        return self._free.get(rc, 0)


def server(**attrs):
    base = dict(id='s1', name='vm', flavor={'vcpus': 2}, addresses=None,
                availability_zone=None, pinned_availability_zone=None)
    base.update(attrs)
    return types.SimpleNamespace(**base)


@pytest.fixture(scope='module')
def cpu_map():
    return CpuMap.from_files(read_map_files())


def live_xml(p):
    """Give the fake domains the live <cpu> text libvirt shows."""
    for host in p.world.hosts.values():
        for sid, guest in host.domains.items():
            host.domains[sid] = dataclasses.replace(
                guest, xml='<cpu><model>%s</model></cpu>' % guest.model)


# -- the rules ---------------------------------------------------------------

def test_trait_problem_counts_a_models_own_features_only(cpu_map):
    srv = server(flavor={'extra_specs': AVX2})
    kvm64 = {'kvm64': cpu_map.model('kvm64').features}
    why = gate.trait_problem(srv, kvm64)
    assert 'HW_CPU_X86_AVX2 (avx2)' in why and 'kvm64' in why
    assert 'ERROR' in why
    # Nova takes the first configured model that serves them all
    both = dict(kvm64, Haswell=cpu_map.model('Haswell').features)
    assert gate.trait_problem(srv, both) is None
    assert gate.trait_problem(server(), kvm64) is None


def test_configured_models_match_names_as_nova_does(cpu_map):
    found = gate.configured_models(CpuSettings('custom', ('KVM64',)), cpu_map)
    assert list(found) == ['kvm64']
    assert gate.configured_models(CpuSettings('host-model'), cpu_map) == {}


def test_group_rules():
    anti = gate.Group('spread', 'anti-affinity', ('a', 'b'))
    assert 'another member is on amd-1' in gate.group_problem(
        anti, 'a', {'b': 'amd-1'}, 'amd-1')
    assert gate.group_problem(anti, 'a', {'b': 'amd-1'}, 'amd-2') is None
    near = gate.Group('near', 'affinity', ('a', 'b'))
    assert 'members are on intel-1' in gate.group_problem(
        near, 'a', {'b': 'intel-1'}, 'amd-1')
    assert gate.group_problem(near, 'a', {}, 'amd-1') is None
    assert not gate.Group('x', 'soft-anti-affinity', ()).hard


def test_cpu_and_machine_type_rules():
    target = Target(machines={'pc-q35-7.2', 'q35'}, compatible=False)
    found = gate.cpu_problems(target, '<cpu/>', 'pc-q35-8.1')
    assert 'refused by libvirt on amd-1' in found[0]
    assert 'avx512f' in found[0]
    assert 'machine type pc-q35-8.1 is not offered' in found[1]
    assert gate.cpu_problems(Target(machines={'pc-q35-7.2'}), '<cpu/>',
                             'pc-q35-7.2') == []
    assert gate.cpu_problems(Target(), None, None) == []


def test_zone_rule():
    target = Target(zone='az2')
    problem, _ = gate.zone_rule(server(pinned_availability_zone='az1'),
                                target)
    assert 'pinned to availability zone az1' in problem
    problem, warning = gate.zone_rule(server(availability_zone='az1'),
                                      target)
    assert problem is None and 'availability zone az1' in warning
    assert gate.zone_rule(server(availability_zone='az2'), target) == (
        None, None)


def test_resource_rules():
    srv = server(flavor={'vcpus': 4})
    wants = {'hw:cpu_policy': 'dedicated', 'resources:VGPU': '1',
             'hw:numa_nodes': '2', 'trait:CUSTOM_FAST': 'required',
             'trait:HW_CPU_X86_SVM': 'forbidden'}
    found = gate.resource_problems(srv, wants, Target(
        cells=1, traits={'HW_CPU_X86_SVM'}, free={'PCPU': 2}))
    assert any('4 dedicated CPUs, amd-1 has 2 PCPU free' in f
               for f in found)
    assert any('1 vGPU' in f for f in found)
    assert any('NUMA topology has 2 nodes, amd-1 has 1' in f for f in found)
    assert any('lacks the traits it requires: CUSTOM_FAST' in f
               for f in found)
    assert any('traits it forbids: HW_CPU_X86_SVM' in f for f in found)
    assert gate.resource_problems(srv, wants, Target(
        cells=2, traits={'CUSTOM_FAST'}, free={'PCPU': 4, 'VGPU': 1})) == []


def test_what_nova_never_live_migrates():
    world = fakes.World()
    ctx = world.context()
    srv = server(addresses={'net': []})
    ctx.cloud.server_ports = lambda s: [
        {'id': 'p1', 'binding:vnic_type': 'accelerator-direct'},
        _port.Port(id='p2', binding_vnic_type='direct'),
        _port.Port(id='p3')]
    problems, warnings = gate.intrinsic(ctx, srv, {
        'accel:device_profile': 'fpga', 'hw:mem_encryption': 'True',
        'pci_passthrough:alias': 'a1:1'})
    assert len(problems) == 4
    assert 'port p1 is accelerator-direct' in problems[3]
    assert warnings == ['port p2 is direct: the destination needs a free '
                        "device for it on the port's physical network"]


def test_verdict_names_each_destination_and_warns_on_soft_groups():
    world = fakes.World()
    [mine] = world.boot('intel-1')
    soft = world.boot('amd-1')
    group(world, 'soft-anti-affinity', [mine] + soft)
    world.hosts['amd-2'].refuse_compare = True
    ctx = world.context()
    with gate.contextlib.ExitStack() as stack:
        checker = gate.Gate.open(ctx, stack, ['amd-1', 'amd-2'])
        verdict = checker.verdict(mine, cpu_xml='<cpu/>', machine=None)
    assert verdict.accepting == ('amd-1',)
    assert [d for d, _ in verdict.refusals] == ['amd-2']
    assert 'another member is on amd-1' in verdict.warnings[0]
    assert verdict.reason().startswith(
        'no destination would accept its migration: amd-2: its CPU')


# -- the verbs ---------------------------------------------------------------

def test_pin_refuses_a_server_its_transition_model_cannot_serve():
    p = fakes.prepared_world(active=2, stopped=0)
    specs(p.servers[0], **AVX2)
    with pytest.raises(PartialFailure) as exc:
        pin.pin(p.world.context(), 'intel-1')
    found = {r.id: r for r in exc.value.results}
    assert found[p.servers[0].id].result == rows.REFUSED
    assert 'No CPU model match traits' in found[p.servers[0].id].reason
    assert found[p.servers[1].id].result == rows.PINNED
    assert p.world.compute.stop_server.call_count == 1   # not the refused


def test_pin_refuses_a_server_no_destination_takes_before_restarting():
    p = fakes.prepared_world(active=2, stopped=0)
    others = p.world.boot('amd-1') + p.world.boot('amd-2')
    group(p.world, 'anti-affinity', [p.servers[0]] + others, 'spread')
    with pytest.raises(PartialFailure) as exc:
        pin.pin(p.world.context(), 'intel-1',
                destinations=['amd-1', 'amd-2'])
    found = {r.id: r for r in exc.value.results}
    assert found[p.servers[0].id].result == rows.REFUSED
    assert 'anti-affinity group spread' in found[p.servers[0].id].reason
    assert found[p.servers[1].id].result == rows.PINNED
    assert p.world.compute.stop_server.call_count == 1
    # the transition CPU went to the destinations' libvirt
    assert "<model fallback='forbid'>kvm64</model>" in (
        p.world.hosts['amd-1'].compared[0])


def test_migrate_sends_a_server_only_where_it_is_accepted():
    p = fakes.pinned_world(active=2, stopped=0)
    live_xml(p)
    p.world.capacity['amd-2'] = p.world.capacity['amd-1'].minus(0, -1024, 0)
    p.world.hosts['amd-2'].refuse_compare = True       # the most room
    found = migrate.migrate(p.world.context(), 'intel-1',
                            destinations=['amd-1', 'amd-2'], timeout=60)
    assert {r.destination for r in found} == {'amd-1'}
    p = fakes.pinned_world(active=1, stopped=0)
    live_xml(p)
    p.world.hosts['amd-1'].refuse_compare = True
    with pytest.raises(PartialFailure) as exc:
        migrate.migrate(p.world.context(), 'intel-1',
                        destinations=['amd-1'], timeout=60)
    [row] = exc.value.results
    assert row.result == rows.REFUSED
    assert 'refused by libvirt on amd-1' in row.reason
    p.world.compute.live_migrate_server.assert_not_called()


def test_finalize_refuses_what_the_hosts_own_custom_model_cannot_serve():
    p = fakes.migrated_world()
    host = p.world.hosts['amd-1']
    host.file = host.original = host.loaded = CpuSettings(
        'custom', ('Westmere',))
    specs(p.servers[0], **AVX2)
    with pytest.raises(PartialFailure) as exc:
        finalize.finalize(p.world.context(), 'amd-1')
    found = {r.id: r for r in exc.value.results}
    assert found[p.servers[0].id].result == rows.REFUSED
    assert 'Westmere' in found[p.servers[0].id].reason
    assert found[p.servers[1].id].result == rows.FINALIZED


def test_vendor_risks_are_named_with_their_window():
    to_amd = check.vendor_risks('Intel', 'AMD')
    assert 'SYSENTER' in to_amd and 'only SYSCALL' in to_amd
    assert 'from the live migration (migrate) until finalize' in to_amd
    assert 'SYSCALL' in check.vendor_risks('AMD', 'Intel')


def test_auto_prefers_a_model_that_serves_the_sources_traits(cpu_map):
    from osc_cpumigrate.cpu import transition
    from osc_cpumigrate.workflow import cpuchoice

    world = fakes.World()
    [needy] = world.boot('intel-1', prefix='needy')
    world.boot('intel-1', prefix='plain')
    said = []
    ctx = world.context(progress=said.append)
    cands = [transition.explicit(cpu_map, 'Westmere', ['avx2']),
             transition.explicit(cpu_map, 'Haswell')]

    def compare(cpu):
        return {'intel-1': CompareResult(True, 'superset')}

    assert cpuchoice.choose_covering(ctx, 'intel-1', cands,
                                     compare).cpu.model == 'Westmere'
    specs(needy, **AVX2)
    assert cpuchoice.choose_covering(ctx, 'intel-1', cands,
                                     compare).cpu.model == 'Haswell'
    # none serves it: the best one, and the operator is told who is left
    choice = cpuchoice.choose_covering(ctx, 'intel-1', cands[:1], compare)
    assert choice.cpu.model == 'Westmere'
    assert needy.name in said[-1] and 'pin refuses them' in said[-1]
