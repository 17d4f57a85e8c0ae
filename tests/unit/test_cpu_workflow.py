"""check, --cpu-model auto and guest floors, with the real libvirt CPU map."""

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import check
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import transition
from tests.unit import fakes


def rows_of(result):
    columns, rows = result
    return [dict(zip(columns, row)) for row in rows]


def test_auto_picks_a_rich_model_accepted_everywhere():
    world = fakes.World()
    model, flags = transition.resolve(world.context(), 'intel-1',
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
        transition.resolve(world.context(), 'intel-1', [], 'auto', [])
    with pytest.raises(WorkflowError, match='explicit --cpu-model'):
        transition.resolve(world.context(), 'intel-1', ['amd-1'], 'auto',
                           ['pcid'])
    assert transition.resolve(world.context(), 'intel-1', [], 'kvm64',
                              ['pcid,+ssbd']) == ('kvm64', ('pcid', '+ssbd'))


def test_auto_refused_everywhere_fails_with_reason():
    world = fakes.World()
    world.hosts['amd-1'].refuse_compare = True
    with pytest.raises(WorkflowError, match='no transition CPU'):
        transition.resolve(world.context(), 'intel-1', ['amd-1'], 'auto', [])


def test_check_reports_cpu_capacity_and_vendor():
    world = fakes.World()
    world.boot('intel-1', 2)
    rows = rows_of(check.check(world.context(), 'intel-1', ['amd-1'],
                               'auto', []))
    verdicts = {(r['Check'], r['Host']): r['Verdict'] for r in rows}
    assert verdicts[('transition cpu', '*')] == 'ok'
    assert verdicts[('cpu compare', 'amd-1')] == 'ok'
    assert verdicts[('vendor', 'amd-1')] == 'warn'
    assert verdicts[('versions', 'amd-1')] == 'ok'
    assert verdicts[('capacity', 'amd-1')] == 'ok'
    kept = [r for r in rows if r['Check'] == 'features kept'][0]
    assert 'x86-64-v' in kept['Reason']


def test_check_fails_on_kvm64_floor_skew_and_disabled():
    world = fakes.World()
    world.boot('intel-1', 1, metadata={'cpumigrate:cpu_floor': 'x86-64-v2'})
    world.hosts['amd-1'].qemu_version = '6.0.0'
    world.services['amd-2'].status = 'disabled'
    with pytest.raises(PartialFailure) as exc:
        check.check(world.context(), 'intel-1', ['amd-1', 'amd-2'], 'kvm64',
                    [])
    rows = [dict(zip(exc.value.columns, r)) for r in exc.value.rows]
    failed = {(r['Check'], r['Host']) for r in rows if r['Verdict'] == 'fail'}
    assert ('versions', 'amd-1') in failed
    assert ('service', 'amd-2') in failed
    assert ('guest floor', 'vm-1') in failed
    kept = [r for r in rows if r['Check'] == 'features kept'][0]
    assert kept['Verdict'] == 'warn' and 'x86-64-v1' in kept['Reason']


def test_check_capacity_fail():
    world = fakes.World()
    world.boot('intel-1', 2)
    world.capacity['amd-1'] = fakes.Capacity(1, 600, 10)
    with pytest.raises(PartialFailure, match='no room for 1 of 2'):
        check.check(world.context(), 'intel-1', ['amd-1'], 'kvm64', [])


def test_pin_protects_rhel9_guest_from_kvm64():
    world = fakes.World()
    world.images['rhel9'] = {'os_distro': 'rhel', 'os_version': '9.4'}
    rhel = world.boot('intel-1', 1, image='rhel9', prefix='rhel')[0]
    plain = world.boot('intel-1', 1)[0]
    world.hosts['intel-1'].apply_transition('kvm64')
    world.hosts['intel-1'].restart_nova_compute()
    ctx = world.context()
    with pytest.raises(PartialFailure) as exc:
        pin.pin(ctx, 'intel-1', [], 'hard-reboot', False,
                transition.floor_check(ctx))
    rows = {r[0]: r[-1] for r in exc.value.rows}
    assert rows[rhel.id].startswith('refused: its guest needs x86-64-v2')
    assert 'sse4.2' in rows[rhel.id]
    assert rows[plain.id] == 'pinned'
    assert world.guest(rhel).model == 'Skylake-Server-IBRS'   # untouched


def test_floor_met_by_auto_cpu_and_override():
    world = fakes.World()
    world.images['rhel9'] = {'os_distro': 'rhel', 'os_version': '9'}
    rhel = world.boot('intel-1', 1, image='rhel9')[0]
    ctx = world.context()
    model, flags = transition.resolve(ctx, 'intel-1', ['amd-1'], 'auto', [])
    host = world.hosts['intel-1']
    host.apply_transition(model, flags)
    host.restart_nova_compute()
    rows = rows_of(pin.pin(ctx, 'intel-1', [], 'hard-reboot', False,
                           transition.floor_check(ctx)))
    assert rows[0]['Result'] == 'pinned'
    assert world.guest(rhel).model == model
