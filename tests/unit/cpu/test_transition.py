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

"""Choosing the transition CPU with libvirt 9.0's real CPU map."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from osc_cpumigrate.cpu import floors
from osc_cpumigrate.cpu import transition as tr
from osc_cpumigrate.types import CompareResult
from osc_cpumigrate.types import HostCpu

from .conftest import make_host

OK = CompareResult(compatible=True, result='superset')
V2 = {'cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4.1', 'sse4.2', 'ssse3'}
# What the issue says kvm64 loses between Skylake-SP and Rome.
KVM64_LOSES = {'ssse3', 'sse4.1', 'sse4.2', 'popcnt', 'aes', 'avx', 'avx2'}


def refuse(message='the CPU is incompatible with host CPU'):
    return CompareResult(compatible=False, result='incompatible',
                         message=message)


class Compare:
    """A compare callback: every host accepts unless ``verdict`` says no."""

    def __init__(self, hosts=('src', 'dst'), verdict=None):
        self.hosts = hosts
        self.verdict = verdict or (lambda cpu, host: OK)
        self.calls = []

    def __call__(self, cpu):
        self.calls.append(cpu)
        return {h: self.verdict(cpu, h) for h in self.hosts}


# -- the example ---------------------------------------------------

def test_common_features_of_bare_skylake_and_rome(cpu_map, bare_skylake,
                                                  bare_rome):
    common = tr.common_features(cpu_map, [bare_skylake, bare_rome])
    assert len(common) == 57
    assert common == (cpu_map.model('Skylake-Server-IBRS').features
                      & cpu_map.model('EPYC-Rome').features)


def test_kvm64_keeps_26_of_57(cpu_map, bare_skylake, bare_rome):
    cpu = tr.explicit(cpu_map, 'kvm64', [], [bare_skylake, bare_rome])
    assert (cpu.kept, len(cpu.common), cpu.level) == (26, 57, 1)
    assert KVM64_LOSES <= cpu.dropped
    assert cpu.extra_flags == ()


def test_auto_for_bare_skylake_and_rome(cpu_map, bare_skylake, bare_rome):
    cands = tr.candidates(cpu_map, [bare_skylake, bare_rome])
    best = cands[0]
    assert best.model == 'Westmere'
    assert len(best.extra_flags) == 25
    assert (best.kept, len(best.common), best.level) == (57, 57, 3)
    assert best.dropped == frozenset()
    assert KVM64_LOSES <= best.features
    assert [c.model for c in cands] == [
        'Westmere', 'Nehalem', 'Penryn', 'Conroe', 'kvm64', 'Opteron_G1']


def test_auto_for_real_skylake_and_rome(cpu_map, skylake, rome):
    cands = tr.candidates(cpu_map, [skylake, rome])
    best = cands[0]
    common = best.common
    assert len(common) > 57                 # host-model extras add some
    assert {'invtsc', 'xsaves', 'spec-ctrl', 'ssbd', 'stibp',
            'arch-capabilities', 'x2apic', 'tsc-deadline'} <= common
    # KVM offers x2apic and tsc-deadline on Rome (the bare EPYC-Rome model
    # lacks them) and spec-ctrl: SandyBridge-IBRS fits, not just Westmere.
    assert best.model == 'SandyBridge-IBRS'
    assert best.level >= 2
    assert (best.kept, len(common), best.level) == (73, 75, 3)
    kvm64 = tr.explicit(cpu_map, 'kvm64', [], [skylake, rome])
    assert best.kept > kvm64.kept == 28     # QEMU adds hypervisor, x2apic
    flags = set(best.extra_flags)
    assert not flags & {'invtsc', 'vmx', 'svm', 'xsaves', 'pdcm',
                        'osxsave', 'monitor'}
    # Speculation mitigations common to both stay.
    assert {'ssbd', 'stibp', 'arch-capabilities'} <= flags
    assert 'spec-ctrl' in best.model_features
    # Only the never-migrate features are left behind.
    assert best.dropped == {'invtsc', 'xsaves'}
    assert not any(f.startswith('-') for f in best.extra_flags)


def test_auto_for_cascadelake_and_rome(cpu_map, cascadelake, rome):
    best = tr.candidates(cpu_map, [cascadelake, rome])[0]
    assert best.model == 'SandyBridge-IBRS'
    assert best.level == 3
    assert {'rdctl-no', 'mds-no'} <= best.features   # both hosts: not affected
    assert best.dropped == {'invtsc', 'xsaves'}


def test_auto_for_three_hosts(cpu_map, skylake, cascadelake, rome):
    best = tr.candidates(cpu_map, [skylake, cascadelake, rome])[0]
    pair = tr.candidates(cpu_map, [skylake, rome])[0]
    assert best.key == pair.key       # Skylake is the poorer Intel host


def test_same_vendor_keeps_avx512(cpu_map, skylake, cascadelake):
    best = tr.candidates(cpu_map, [skylake, cascadelake])[0]
    # The hosts disable mpx, which every Skylake/Cascadelake model has.
    assert best.model == 'Broadwell-IBRS'
    assert best.level == 4
    assert {'avx512f', 'avx512vl', 'clwb'} <= set(best.extra_flags)
    assert 'vmx' not in best.extra_flags       # nested virt never forced
    assert 'vmx' in best.dropped


def test_pair_where_only_kvm64_fits(cpu_map, rome):
    # A host whose hypervisor offers little more than kvm64 (an old CPU,
    # or nested virtualization with a kvm64 guest CPU).
    old = make_host(cpu_map, 'kvm64', 'Intel', ('vme', 'x2apic',
                                                'hypervisor'))
    cands = tr.candidates(cpu_map, [old, rome])
    assert cands[0].model == 'kvm64'
    assert cands[0].level == 1
    assert all(c.level == 1 for c in cands)
    assert {c.model for c in cands} <= {'kvm64', 'Opteron_G1', 'qemu64'}
    rhel9 = floors.guest_floor({'os_distro': 'rhel', 'os_version': '9'}, {})
    ok, missing = floors.satisfied(rhel9, cands[0].features)
    assert not ok and missing == V2 - {'cx16', 'pni'}


def test_candidates_leave_out_32bit_and_rhel_only_models(cpu_map, skylake,
                                                         rome):
    names = {c.model for c in tr.candidates(cpu_map, [skylake, rome])}
    assert not names & {'486', 'pentium', 'qemu32', 'kvm32',
                        'cpu64-rhel5', 'cpu64-rhel6'}


def test_usable_models_reported_by_hosts_rule(cpu_map, skylake, rome):
    rome2 = dataclasses.replace(
        rome, usable_models=rome.usable_models - {'SandyBridge',
                                                  'SandyBridge-IBRS'})
    best = tr.candidates(cpu_map, [skylake, rome2])[0]
    assert best.model == 'Westmere-IBRS'
    assert 'avx' in best.extra_flags
    assert best.kept == tr.candidates(cpu_map, [skylake, rome])[0].kept


def test_hosts_without_usable_models_are_judged_by_features(cpu_map, skylake,
                                                            rome):
    hosts = [dataclasses.replace(h, usable_models=frozenset())
             for h in (skylake, rome)]
    assert tr.candidates(cpu_map, hosts)[0].model == 'SandyBridge-IBRS'


def test_qemu64_last_resort_disables_svm(cpu_map, skylake, rome):
    # domcapabilities reports qemu64 usable on Intel (QEMU turns svm off
    # under KVM) although libvirt's map lists svm for it.
    sky = dataclasses.replace(skylake,
                              usable_models=skylake.usable_models | {'qemu64'})
    cands = tr.candidates(cpu_map, [sky, rome])
    assert cands[-1].model == 'qemu64' and cands[-1].last_resort
    assert '-svm' in cands[-1].extra_flags
    assert 'svm' not in cands[-1].features
    assert "<feature policy=\"disable\" name=\"svm\"/>" in cands[-1].as_xml()


def test_non_x86_hosts_are_refused(cpu_map, rome):
    arm = HostCpu(arch='aarch64', vendor='ARM', model='Neoverse-N1',
                  features=frozenset())
    with pytest.raises(ValueError, match='not x86'):
        tr.candidates(cpu_map, [rome, arm])
    with pytest.raises(ValueError, match='no hosts'):
        tr.candidates(cpu_map, [])


def test_never_extra(cpu_map):
    avoid = tr.never_extra(cpu_map)
    assert {'invtsc', 'vmx', 'svm', 'xsaves', 'osxsave', 'ospke', 'npt',
            'nrip-save'} <= avoid
    assert not avoid & {'avx2', 'spec-ctrl', 'ssbd', 'md-clear', 'pcid',
                        'hypervisor', 'x2apic'}
    assert set(tr.NEVER_EXTRA) <= cpu_map.feature_names()


# -- as_xml / describe -----------------------------------------------------

def test_as_xml(cpu_map, skylake, rome):
    cpu = tr.candidates(cpu_map, [skylake, rome])[0]
    root = ET.fromstring(cpu.as_xml())
    assert root.tag == 'cpu'
    assert root.attrib == {'mode': 'custom', 'match': 'exact'}
    model = root.find('model')
    assert (model.text, model.get('fallback')) == (cpu.model, 'forbid')
    assert root.find('vendor') is None
    feats = [(f.get('policy'), f.get('name')) for f in root.findall('feature')]
    assert feats == [('require', f) for f in cpu.extra_flags]


def test_describe(cpu_map, bare_skylake, bare_rome):
    hosts = [bare_skylake, bare_rome]
    assert tr.candidates(cpu_map, hosts)[0].describe() == (
        'Westmere +25 flags: keeps 57 of 57 common features, x86-64-v3')
    assert tr.explicit(cpu_map, 'kvm64', [], hosts).describe() == (
        'kvm64: keeps 26 of 57 common features, x86-64-v1')
    assert tr.explicit(cpu_map, 'kvm64', ['+pcid', '-pse36'], []).describe() \
        == 'kvm64 +1 flags -pse36: keeps 28 of 28 common features, x86-64-v1'


# -- choose ----------------------------------------------------------------

def test_choose_takes_the_best_when_accepted(cpu_map, skylake, rome):
    cands = tr.candidates(cpu_map, [skylake, rome])
    compare = Compare()
    choice = tr.choose(cands, compare)
    assert choice.cpu == cands[0]
    assert choice.refused == ()
    assert len(compare.calls) == 1
    assert set(choice.results) == {'src', 'dst'}


def test_choose_falls_back_to_the_next_model(cpu_map, skylake, rome):
    cands = tr.candidates(cpu_map, [skylake, rome])
    first, second = cands[0].model, cands[1].model
    compare = Compare(verdict=lambda cpu, host: (
        refuse('host CPU vendor does not match required CPU vendor Intel')
        if cpu.model == first and host == 'dst' else OK))
    choice = tr.choose(cands, compare)
    assert choice.cpu == cands[1]
    assert [(r.cpu.model, r.host) for r in choice.refused] == [
        (first, 'dst')]
    assert 'vendor' in choice.refused[0].message
    assert [c.model for c in choice.tried] == [first, second]


def test_choose_drops_refused_extra_flags_first(cpu_map, skylake, rome):
    cands = tr.candidates(cpu_map, [skylake, rome])
    msg = ('the CPU is incompatible with host CPU: Host CPU does not '
           'provide required features: xgetbv1, arch-capabilities')

    def verdict(cpu, host):
        bad = {'xgetbv1', 'arch-capabilities'} & cpu.features
        return refuse(msg) if bad and host == 'src' else OK

    choice = tr.choose(cands, Compare(verdict=verdict))
    assert choice.cpu.model == cands[0].model
    assert not {'xgetbv1', 'arch-capabilities'} & set(choice.cpu.extra_flags)
    assert choice.cpu.kept == cands[0].kept - 2
    assert len(choice.tried) == 2


def test_choose_skips_models_needing_a_refused_feature(cpu_map, skylake,
                                                       rome):
    cands = tr.candidates(cpu_map, [skylake, rome])

    def verdict(cpu, host):
        if 'aes' in cpu.features:
            return refuse('Host CPU does not provide required features: aes')
        return OK

    choice = tr.choose(cands, Compare(verdict=verdict))
    # SandyBridge* and Westmere* have aes in the model: unusable;
    # Nehalem-IBRS comes next and drops the aes flag.
    assert choice.cpu.model == 'Nehalem-IBRS'
    assert [c.model for c in choice.tried] == ['SandyBridge-IBRS',
                                               'Nehalem-IBRS']
    assert 'aes' not in choice.cpu.features


def test_choose_raises_when_every_candidate_is_refused(cpu_map, skylake,
                                                       rome):
    cands = tr.candidates(cpu_map, [skylake, rome])
    compare = Compare(verdict=lambda cpu, host: refuse(f'no on {host}'))
    with pytest.raises(tr.NoTransitionCpu) as err:
        tr.choose(cands, compare)
    text = str(err.value)
    assert 'no transition CPU is accepted by every host' in text
    assert f'{cands[0].model} +' in text and 'src: no on src' in text
    assert 'dst: no on dst' in text
    assert len(err.value.refused) == 2 * len(cands)
    assert "kvm64 is the runbook's choice" not in text    # kvm64 was tried


def test_choose_limits_the_tries(cpu_map, skylake, rome):
    cands = tr.candidates(cpu_map, [skylake, rome])
    compare = Compare(verdict=lambda cpu, host: refuse())
    with pytest.raises(tr.NoTransitionCpu) as err:
        tr.choose(cands, compare, max_tries=2)
    assert len(compare.calls) == 2
    assert 'more candidates left untried' in str(err.value)
    assert "--cpu-model kvm64 is the runbook's choice" in str(err.value)


def test_choose_without_candidates():
    with pytest.raises(tr.NoTransitionCpu, match='no CPU model is usable'):
        tr.choose([], Compare())


def test_missing_from_message():
    message = ('error: the CPU is incompatible with host CPU: Host CPU does '
               'not provide required features: avx512f, sse4.2\n')
    assert tr.missing_from_message(message) == {'avx512f', 'sse4.2'}
    assert tr.missing_from_message('incompatible') == frozenset()
    assert tr.missing_from_message('') == frozenset()


# -- explicit --------------------------------------------------------------

def test_explicit_flags(cpu_map, skylake, rome):
    cpu = tr.explicit(cpu_map, 'kvm64',
                      ['+pcid', 'sse4_2', '-vme', 'popcnt,ssse3'],
                      [skylake, rome])
    assert cpu.extra_flags == ('pcid', 'sse4.2', 'popcnt', 'ssse3', '-vme')
    assert {'sse4.2', 'popcnt', 'ssse3'} <= cpu.features
    assert 'vme' not in cpu.features
    root = ET.fromstring(cpu.as_xml())
    assert ('disable', 'vme') in [(f.get('policy'), f.get('name'))
                                  for f in root.findall('feature')]


def test_explicit_model_name_case(cpu_map):
    assert tr.explicit(cpu_map, 'KVM64').model == 'kvm64'
    assert tr.explicit(cpu_map, 'westmere').model == 'Westmere'


def test_explicit_errors(cpu_map):
    with pytest.raises(ValueError, match="unknown CPU model 'Zen9'"):
        tr.explicit(cpu_map, 'Zen9')
    with pytest.raises(ValueError, match="unknown CPU feature 'warp'"):
        tr.explicit(cpu_map, 'kvm64', ['+warp'])
    with pytest.raises(ValueError, match='both enabled and disabled'):
        tr.explicit(cpu_map, 'kvm64', ['pcid', '-pcid'])


def test_explicit_notes_flags_auto_would_not_add(cpu_map):
    cpu = tr.explicit(cpu_map, 'Westmere', ['vmx', 'invtsc', 'avx'])
    assert [n.split(':')[0] for n in cpu.notes] == ['vmx', 'invtsc']
