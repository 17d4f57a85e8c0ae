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

"""--cpu-model auto with the real libvirt CPU map (workflow.cpuchoice)."""

import pytest

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import cpuchoice
from tests.unit import fakes


def test_auto_picks_a_rich_model_accepted_everywhere():
    world = fakes.World()
    model, flags = cpuchoice.choose(world.context(), 'intel-1',
                                    ['amd-1', 'amd-2'], 'auto', [])
    assert model not in ('kvm64', 'qemu64')
    assert 'sse4.2' in flags or 'avx2' in flags
    assert not {'vmx', 'svm', 'invtsc'} & set(flags)
    for name in ('intel-1', 'amd-1', 'amd-2'):   # proven on every host
        assert ('<model fallback=\'forbid\'>%s</model>' % model
                in world.hosts[name].compared[-1])


def test_auto_needs_destinations_and_no_flags():
    world = fakes.World()
    with pytest.raises(WorkflowError, match='give --destination'):
        cpuchoice.choose(world.context(), 'intel-1', [], 'auto', [])
    with pytest.raises(WorkflowError, match='explicit --cpu-model'):
        cpuchoice.choose(world.context(), 'intel-1', ['amd-1'], 'auto',
                         ['pcid'])
    assert cpuchoice.choose(world.context(), 'intel-1', [], 'kvm64',
                            ['pcid,+ssbd']) == ('kvm64', ('pcid', 'ssbd'))


def test_auto_refused_everywhere_fails_with_reason():
    world = fakes.World()
    world.hosts['amd-1'].refuse_compare = True
    with pytest.raises(WorkflowError, match='no transition CPU'):
        cpuchoice.choose(world.context(), 'intel-1', ['amd-1'], 'auto', [])


MISSING = ('the CPU is incompatible with host CPU: Host CPU does not provide '
           'required features: %s')


def refusing(host, features):
    """``host`` refuses any CPU that requires one of ``features``, naming
    them as libvirt's --error does."""
    def compare_cpu(xml):
        host.compared.append(xml)
        lacking = [f for f in features if 'name="%s"' % f in xml]
        if lacking:
            return host_api.CompareResult(False, 'incompatible',
                                          MISSING % ', '.join(lacking))
        return host_api.CompareResult(True, 'superset')
    host.compare_cpu = compare_cpu


def test_explicit_is_canonical_and_proven_on_every_host():
    world = fakes.World()
    said = []
    ctx = world.context()
    ctx.progress = said.append
    assert cpuchoice.choose(ctx, 'intel-1', ['amd-1'], 'KVM64',
                            ['SSE4.2', 'Sse4_1,-PSE36']) == (
        'kvm64', ('sse4.2', 'sse4.1', '-pse36'))
    for name in ('intel-1', 'amd-1'):
        xml = world.hosts[name].compared[-1]
        assert "<model fallback='forbid'>kvm64</model>" in xml
        assert 'policy="require" name="sse4.2"' in xml
        assert 'policy="disable" name="pse36"' in xml
    assert not any('proven on intel-1 only' in line for line in said)
    cpuchoice.choose(ctx, 'intel-1', [], 'kvm64', [])
    assert any('proven on intel-1 only' in line for line in said)


def test_explicit_refused_names_the_missing_features_and_changes_nothing():
    world = fakes.World()
    refusing(world.hosts['amd-2'], ['avx512f'])
    with pytest.raises(WorkflowError, match=r'refused by amd-2 \(.*'
                       r'required features: avx512f\); nothing was changed'):
        cpuchoice.choose(world.context(), 'intel-1', ['amd-1', 'amd-2'],
                         'kvm64', ['avx512f'])
    assert 'apply_transition' not in world.hosts['intel-1'].calls
    for bad, flags in (('kvm65', []), ('kvm64', ['sse9'])):
        with pytest.raises(WorkflowError, match='unknown CPU'):
            cpuchoice.choose(world.context(), 'intel-1', ['amd-1'], bad,
                             flags)
    assert not world.hosts['amd-1'].compared[-1:] or 'sse9' not in (
        world.hosts['amd-1'].compared[-1])


def test_auto_drops_the_flags_a_host_names_and_tries_again():
    world = fakes.World()
    model, flags = cpuchoice.choose(world.context(), 'intel-1', ['amd-1'],
                                    'auto', [])
    assert 'avx2' in flags
    refusing(world.hosts['amd-1'], ['avx2', 'fma'])
    again, fewer = cpuchoice.choose(world.context(), 'intel-1', ['amd-1'],
                                    'auto', [])
    assert again == model and set(fewer) == set(flags) - {'avx2', 'fma'}
    # QEMU gives these by itself: never written as flags
    assert not {'hypervisor', 'x2apic'} & set(flags)


@pytest.mark.parametrize('conf, said', [
    ({}, None),
    ({'virt_type': 'kvm'}, None),
    ({'virt_type': 'qemu'}, 'virt_type = qemu'),
    ({'skip_cpu_compare_at_startup': True}, 'skip_cpu_compare_at_startup'),
])
def test_startup_check_skipped(conf, said):
    state = host_api.ConfState('/etc/nova/nova.conf', '0' * 64,
                               host_api.CpuSettings(), False,
                               host_api.CpuSettings(), None, None, **conf)
    found = cpuchoice.startup_check_skipped(state)
    assert (found is None) if said is None else (said in found)


def test_auto_survives_libvirts_notsx_hint():
    msg = ("the CPU is incompatible with host CPU: Host CPU does not provide "
           "required features: hle, rtm; try using 'Haswell-noTSX' CPU model")
    from osc_cpumigrate.cpu import transition
    assert transition.missing_from_message(msg) == {'hle', 'rtm'}
