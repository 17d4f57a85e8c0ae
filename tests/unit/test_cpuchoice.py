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
                            ['pcid,+ssbd']) == ('kvm64', ('pcid', '+ssbd'))


def test_auto_refused_everywhere_fails_with_reason():
    world = fakes.World()
    world.hosts['amd-1'].refuse_compare = True
    with pytest.raises(WorkflowError, match='no transition CPU'):
        cpuchoice.choose(world.context(), 'intel-1', ['amd-1'], 'auto', [])
