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

"""check with the real libvirt CPU map: verdicts and failures."""

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.workflow import check
from osc_cpumigrate.workflow import rows
from tests.unit import fakes


def test_check_reports_cpu_capacity_and_vendor():
    world = fakes.World()
    world.boot('intel-1', 2)
    ctx, opened = world.context(), []
    real_open = ctx.open_host
    ctx.open_host = lambda name, opts: opened.append(name) or real_open(
        name, opts)
    found = check.check(ctx, 'intel-1', destinations=['amd-1'])
    # the source: one session for the CPU survey, one for the servers
    assert opened.count('intel-1') == 2
    assert all(isinstance(r, rows.CheckRow) for r in found)
    verdicts = {(r.check, r.host): r.verdict for r in found}
    assert verdicts[('transition cpu', '*')] == 'ok'
    assert verdicts[('cpu compare', 'amd-1')] == 'ok'
    assert verdicts[('vendor', 'amd-1')] == 'warn'
    assert verdicts[('versions', 'amd-1')] == 'ok'
    assert verdicts[('capacity', 'amd-1')] == 'ok'
    assert verdicts[('service', 'amd-1')] == 'ok'
    kept = [r for r in found if r.check == 'features kept'][0]
    assert 'x86-64-v' in kept.reason
    assert {r.server for r in found} == {''}


def test_check_fails_on_kvm64_floor_skew_and_disabled():
    world = fakes.World()
    [vm] = world.boot('intel-1', 1,
                      metadata={'cpumigrate:cpu_floor': 'x86-64-v2'})
    world.hosts['amd-1'].qemu_version = '6.0.0'
    world.services['amd-2'].status = 'disabled'
    with pytest.raises(PartialFailure) as exc:
        check.check(world.context(), 'intel-1',
                    destinations=['amd-1', 'amd-2', 'intel-1'],
                    model='kvm64')
    found = exc.value.results
    failed = {(r.check, r.host) for r in found if r.verdict == 'fail'}
    assert ('versions', 'amd-1') in failed
    assert ('service', 'amd-2') in failed
    assert ('service', 'intel-1') in failed        # the source itself
    [floor] = [r for r in found if r.check == 'guest floor']
    assert (floor.host, floor.server, floor.verdict) == ('intel-1', vm.id,
                                                         'fail')
    assert floor.reason.startswith('vm-1: ')
    kept = [r for r in found if r.check == 'features kept'][0]
    assert kept.verdict == 'warn' and 'x86-64-v1' in kept.reason
    assert str(exc.value).startswith('%d of %d checks failed' % (
        len([r for r in found if r.verdict == 'fail']), len(found)))


def test_check_capacity_fail():
    world = fakes.World()
    world.boot('intel-1', 2)
    world.capacity['amd-1'] = fakes.Capacity(1, 600, 10)
    with pytest.raises(PartialFailure, match='no room for 1 of 2'):
        check.check(world.context(), 'intel-1', destinations=['amd-1'],
                    model='kvm64')


def test_check_says_when_nova_skips_its_startup_cpu_check():
    world = fakes.World()
    found = check.check(world.context(), 'intel-1', destinations=['amd-1'])
    assert 'startup check' not in {r.check for r in found}
    world.hosts['intel-1'].conf_options = {'virt_type': 'qemu'}
    found = check.check(world.context(), 'intel-1', destinations=['amd-1'])
    [row] = [r for r in found if r.check == 'startup check']
    assert (row.host, row.verdict) == ('intel-1', 'warn')
    assert 'virt_type = qemu' in row.reason
