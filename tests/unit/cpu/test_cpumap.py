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

"""CpuMap: reading libvirt's x86 CPU map as the hosts ship it."""

from __future__ import annotations

import pytest

from osc_cpumigrate.cpu.cpumap import CpuMap
from osc_cpumigrate.cpu.cpumap import CpuMapError
from osc_cpumigrate.cpu.cpumap import host_features
from osc_cpumigrate.types import HostCpu

FEATURES = """<cpus>
  <feature name='fpu'><cpuid eax_in='0x01' edx='0x00000001'/></feature>
  <feature name='pni'><alias name='sse3' source='qemu'/>
    <cpuid eax_in='0x01' ecx='0x00000001'/></feature>
  <feature name='avx'><cpuid eax_in='0x01' ecx='0x10000000'/></feature>
  <feature name='invtsc' migratable='no'>
    <cpuid eax_in='0x80000007' edx='0x00000100'/></feature>
  <feature name='npt'><cpuid eax_in='0x8000000a' edx='0x00000001'/></feature>
  <feature name='vmx-ept'><msr index='0x48b' edx='0x2' eax='0'/></feature>
</cpus>"""
VENDORS = "<cpus><vendor name='Intel' string='GenuineIntel'/></cpus>"


def test_real_map_models_and_features(cpu_map):
    names = cpu_map.model_names()
    assert len(names) == 58          # libvirt 9.0's x86 models
    assert names[0] == '486'         # index.xml order
    assert {'kvm64', 'qemu64', 'Westmere', 'Skylake-Server-IBRS',
            'Cascadelake-Server', 'EPYC-Rome'} <= set(names)
    assert len(cpu_map.model('Skylake-Server-IBRS').features) == 71
    assert len(cpu_map.model('EPYC-Rome').features) == 76
    assert len(cpu_map.model('kvm64').features) == 26
    assert cpu_map.model('Westmere').vendor == 'Intel'
    assert cpu_map.model('EPYC-Rome').vendor == 'AMD'
    assert cpu_map.model('kvm64').vendor is None
    assert {'sse4.1', 'sse4.2', 'pni', 'ssse3', 'popcnt', 'avx2', 'invtsc',
            'vmx', 'svm'} <= cpu_map.feature_names()
    assert cpu_map.vendor_names() == {'Intel', 'AMD', 'Hygon'}


def test_other_architectures_are_ignored(map_files):
    # index.xml includes arm_*.xml and ppc64_*.xml, which are not given.
    assert not any(n.startswith(('arm_', 'ppc64_')) for n in map_files)
    CpuMap.from_files(map_files)


def test_aliases_and_migratable(cpu_map):
    assert cpu_map.canonical('sse4_2') == 'sse4.2'
    assert cpu_map.canonical('sse3') == 'pni'
    assert cpu_map.canonical('pclmulqdq') == 'pclmuldq'
    assert cpu_map.canonical('no-such') == 'no-such'
    assert cpu_map.feature('sse4-1').name == 'sse4.1'
    assert cpu_map.feature('no-such') is None
    assert cpu_map.non_migratable() == {'invtsc', 'xsaves'}
    virt = cpu_map.virtualization_features()
    assert {'npt', 'nrip-save', 'avic', 'vgif'} <= virt
    assert not virt & {'avx', 'svm', 'vmx', 'sse4.2'}


def test_unknown_model(cpu_map):
    assert not cpu_map.has_model('Pentium-Pro-Max')
    with pytest.raises(KeyError):
        cpu_map.model('Pentium-Pro-Max')


def test_inheritance_and_removed_features():
    files = {
        'index.xml': """<cpus><arch name='x86'>
            <include filename='x86_vendors.xml'/>
            <include filename='x86_features.xml'/>
            <include filename='x86_Base.xml'/>
            <include filename='x86_Child.xml'/></arch>
            <arch name='arm'><include filename='arm_x.xml'/></arch></cpus>""",
        'x86_vendors.xml': VENDORS,
        'x86_features.xml': FEATURES,
        'x86_Base.xml': """<cpus><model name='Base'>
            <vendor name='Intel'/><feature name='fpu'/><feature name='pni'/>
            </model></cpus>""",
        'x86_Child.xml': """<cpus><model name='Child-v2'>
            <model name='Base'/><feature name='avx'/>
            <feature name='invtsc' removed='yes'/></model></cpus>""",
    }
    m = CpuMap.from_files(files)
    child = m.model('Child-v2')
    assert child.features == {'fpu', 'pni', 'avx'}
    assert child.vendor == 'Intel'
    assert child.parent == 'Base'
    assert m.virtualization_features() == {'npt', 'vmx-ept'}


def test_ancestry_errors():
    base = {'x86_features.xml': FEATURES}
    loop = dict(base, **{
        'x86_A.xml': "<cpus><model name='A'><model name='B'/></model></cpus>",
        'x86_B.xml': "<cpus><model name='B'><model name='A'/></model></cpus>",
    })
    with pytest.raises(CpuMapError, match='loops'):
        CpuMap.from_files(loop).model('A')
    orphan = dict(base, **{
        'x86_A.xml': "<cpus><model name='A'><model name='Z'/></model></cpus>",
    })
    with pytest.raises(CpuMapError, match='unknown ancestor'):
        CpuMap.from_files(orphan).model('A')


def test_monolithic_cpu_map_xml():
    # libvirt < 4.7 shipped one cpu_map.xml with everything inline.
    text = ("<cpus><arch name='x86'>"
            + VENDORS.replace('<cpus>', '').replace('</cpus>', '')
            + FEATURES.replace('<cpus>', '').replace('</cpus>', '')
            + "<model name='M'><feature name='fpu'/></model></arch>"
            "<arch name='ppc64'><model name='POWER8'/></arch></cpus>")
    m = CpuMap.from_files({'/usr/share/libvirt/cpu_map.xml': text})
    assert m.model_names() == ['M']
    assert m.model('M').features == {'fpu'}


def test_without_index_reads_x86_files(map_files):
    files = {k: v for k, v in map_files.items() if k != 'index.xml'}
    m = CpuMap.from_files(files)
    assert len(m.model_names()) == 58


def test_keys_may_be_paths(map_files):
    files = {'/usr/share/libvirt/cpu_map/' + k: v
             for k, v in map_files.items()}
    assert CpuMap.from_files(files).has_model('EPYC-Rome')


def test_broken_maps(map_files):
    files = dict(map_files)
    del files['x86_Westmere.xml']
    with pytest.raises(CpuMapError, match='x86_Westmere.xml is missing'):
        CpuMap.from_files(files)
    with pytest.raises(CpuMapError, match='x86_kvm64.xml'):
        CpuMap.from_files(dict(map_files, **{'x86_kvm64.xml': '<cpus'}))
    with pytest.raises(CpuMapError, match='no libvirt CPU map'):
        CpuMap.from_files({'README': 'x'})
    with pytest.raises(CpuMapError, match='twice'):
        CpuMap.from_files({
            'x86_a.xml': "<cpus><model name='A'/></cpus>",
            'x86_b.xml': "<cpus><model name='A'/></cpus>"})


def test_host_features_from_host_model(cpu_map):
    host = HostCpu(arch='x86_64', vendor='Intel', model='Skylake-Server-IBRS',
                   features=frozenset({'monitor'}),
                   host_model='Skylake-Server-IBRS',
                   host_model_features=frozenset({'invtsc', 'md_clear'}),
                   host_model_disabled=frozenset({'mpx'}))
    feats = host_features(cpu_map, host)
    base = cpu_map.model('Skylake-Server-IBRS').features
    assert feats == (base | {'invtsc', 'md-clear'}) - {'mpx'}
    assert 'monitor' not in feats       # capabilities only, not host-model


def test_host_features_fallback_to_capabilities(cpu_map):
    host = HostCpu(arch='x86_64', vendor='AMD', model='EPYC-Rome',
                   features=frozenset({'svm', 'sse3'}))
    feats = host_features(cpu_map, host)
    assert feats == cpu_map.model('EPYC-Rome').features | {'svm', 'pni'}


def test_host_features_model_missing_from_map(cpu_map):
    host = HostCpu(arch='x86_64', vendor='AMD', model='EPYC-Genoa',
                   features=frozenset(), host_model='EPYC-Genoa')
    with pytest.raises(CpuMapError, match='EPYC-Genoa'):
        host_features(cpu_map, host)
