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

"""Parsing of recorded virsh output."""

import base64
import os

import pytest

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import virsh

DUMPXML = """<domain type='kvm' id='3'>
  <name>instance-0000002a</name>
  <uuid>0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0</uuid>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>Skylake-Server-IBRS</model>
    <vendor>Intel</vendor>
    <topology sockets='1' dies='1' cores='2' threads='1'/>
    <feature policy='require' name='pcid'/>
    <feature policy='disable' name='mpx'/>
    <feature policy='force' name='ssbd'/>
  </cpu>
</domain>"""

CAPABILITIES = """<capabilities>
  <host>
    <uuid>44454c4c-3000-1051-8048-b7c04f4e4d32</uuid>
    <cpu>
      <arch>x86_64</arch>
      <model>EPYC-Rome</model>
      <vendor>AMD</vendor>
      <microcode version='137367679'/>
      <topology sockets='1' dies='1' cores='32' threads='2'/>
      <feature name='x2apic'/>
      <feature name='topoext'/>
      <pages unit='KiB' size='4'/>
    </cpu>
  </host>
</capabilities>"""

DOMCAPABILITIES = """<domainCapabilities>
  <path>/usr/bin/qemu-system-x86_64</path>
  <cpu>
    <mode name='host-passthrough' supported='yes'/>
    <mode name='host-model' supported='yes'>
      <model fallback='forbid'>EPYC-Rome</model>
      <vendor>AMD</vendor>
      <feature policy='require' name='x2apic'/>
      <feature policy='require' name='topoext'/>
      <feature policy='disable' name='xsaves'/>
    </mode>
    <mode name='custom' supported='yes'>
      <model usable='yes' vendor='Intel'>Westmere</model>
      <model usable='no' vendor='Intel'>Skylake-Server-IBRS</model>
      <model usable='yes' vendor='AMD'>EPYC-Rome</model>
      <model usable='yes'>kvm64</model>
    </mode>
  </cpu>
</domainCapabilities>"""

VERSION = """Compiled against library: libvirt 9.0.0
Using library: libvirt 9.0.0
Using API: QEMU 9.0.0
Running hypervisor: QEMU 7.2.0
"""


def test_guest_cpu():
    cpu = virsh.parse_guest_cpu(DUMPXML)
    assert (cpu.mode, cpu.model, cpu.vendor) == (
        'custom',
        'Skylake-Server-IBRS',
        'Intel',
    )
    assert cpu.features == (
        ('require', 'pcid'),
        ('disable', 'mpx'),
        ('force', 'ssbd'),
    )
    assert cpu.required_features() == {'pcid', 'ssbd'}
    assert cpu.xml.startswith('<cpu mode="custom"') and cpu.xml.endswith(
        '</cpu>'
    )
    assert virsh.parse_guest_cpu(cpu.xml) == cpu


def test_guest_cpu_defaults():
    cpu = virsh.parse_guest_cpu(
        '<domain><cpu><model>kvm64</model></cpu></domain>'
    )
    assert cpu.mode == 'custom' and cpu.model == 'kvm64'
    cpu = virsh.parse_guest_cpu(
        "<domain><cpu mode='host-passthrough'/></domain>"
    )
    assert cpu.mode == 'host-passthrough' and cpu.model is None
    assert virsh.parse_guest_cpu('<domain/>').mode is None
    with pytest.raises(HostError):
        virsh.parse_guest_cpu('error: oops')


def test_host_cpu_parts():
    caps = virsh.parse_capabilities(CAPABILITIES)
    assert caps == {'arch': 'x86_64', 'vendor': 'AMD', 'model': 'EPYC-Rome',
                    'features': frozenset({'x2apic', 'topoext'}),
                    'machines': frozenset(), 'numa_cells': None}
    dom = virsh.parse_domcapabilities(DOMCAPABILITIES)
    assert dom['host_model'] == 'EPYC-Rome'
    assert dom['host_model_features'] == {'x2apic', 'topoext'}
    assert dom['host_model_disabled'] == {'xsaves'}
    assert dom['usable_models'] == {'Westmere', 'EPYC-Rome', 'kvm64'}
    assert virsh.parse_version(VERSION) == ('9.0.0', '7.2.0')
    assert virsh.parse_version('') == (None, None)


@pytest.mark.parametrize(
    'code,out,expected',
    [
        (
            0,
            'CPU described in /dev/stdin is identical to the CPU provided by '
            'hypervisor on the '
            'host\n',
            ('identical', True),
        ),
        (
            0,
            'The CPU provided by hypervisor on the host is a superset of CPU '
            'described in '
            '/dev/stdin\n',
            ('superset', True),
        ),
        (
            1,
            'CPU described in /dev/stdin is incompatible with the CPU '
            'provided by hypervisor on '
            'the host\n',
            ('incompatible', False),
        ),
    ],
)
def test_compare(code, out, expected):
    result = virsh.parse_compare(code, out, '')
    assert (result.result, result.compatible) == expected


def test_compare_error():
    with pytest.raises(HostError, match='not supported'):
        virsh.parse_compare(
            1,
            '',
            'error: Failed to compare hypervisor CPU with /dev/stdin\n'
            'error: this function is not supported',
        )


def test_cpu_map_bundle():
    text = ''.join(
        '%s%s\n%s\n'
        % (
            virsh.CPU_MAP_SEPARATOR,
            name,
            base64.b64encode(body.encode()).decode(),
        )
        for name, body in (
            ('index.xml', '<cpus/>\n'),
            ('x86_kvm64.xml', '<cpus>\n<model name="kvm64"/></cpus>\n'),
            ('empty.xml', ''),
        )
    )
    assert virsh.parse_cpu_map(text) == {
        'index.xml': '<cpus/>\n',
        'x86_kvm64.xml': '<cpus>\n<model name="kvm64"/></cpus>\n',
        'empty.xml': '',
    }


# -- realistic output: an EPYC 7502 host (tests/lab/cputestdata) as the lab
# answers, in libvirt 9.0's formats (tests/unit/host/data/epyc-7502-*) ------

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def _data(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def test_realistic_capabilities_are_the_raw_host_cpu():
    caps = virsh.parse_capabilities(_data('epyc-7502-capabilities.xml'))
    assert (caps['vendor'], caps['model']) == ('AMD', 'EPYC-Rome')
    assert {'svm-lock', 'ibs', 'topoext', 'invtsc'} <= caps['features']
    assert 'hypervisor' not in caps['features']
    # the machine types its QEMU offers, aliases by their canonical name
    assert {'pc-q35-7.2', 'q35', 'pc-q35-5.0'} <= caps['machines']


def test_guest_machine_type_comes_from_os_type():
    cpu = virsh.parse_guest_cpu(
        "<domain><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>"
        "</os><cpu><model>kvm64</model></cpu></domain>")
    assert cpu.machine == 'pc-q35-7.2'
    assert virsh.parse_guest_cpu('<domain/>').machine is None


def test_numa_cells_of_capabilities():
    caps = virsh.parse_capabilities(
        "<capabilities><host><cpu><arch>x86_64</arch></cpu><topology>"
        "<cells num='2'/></topology></host></capabilities>")
    assert caps['numa_cells'] == 2


def test_realistic_domcapabilities_are_the_host_model():
    dom = virsh.parse_domcapabilities(_data('epyc-7502-domcapabilities.xml'))
    assert dom['host_model'] == 'EPYC-Rome'
    assert dom['host_model_features'] == {
        'x2apic', 'tsc-deadline', 'hypervisor', 'tsc_adjust', 'spec-ctrl',
        'stibp', 'arch-capabilities', 'ssbd', 'xsaves', 'cmp_legacy',
        'amd-ssbd', 'virt-ssbd', 'rdctl-no', 'skip-l1dfl-vmentry', 'mds-no',
        'pschange-mc-no'}
    assert dom['host_model_disabled'] == frozenset()
    assert {'EPYC-Rome', 'Westmere', 'kvm64'} <= dom['usable_models']
    assert 'Skylake-Client' not in dom['usable_models']


def test_realistic_running_guest():
    cpu = virsh.parse_guest_cpu(_data('epyc-7502-dumpxml-running.xml'))
    assert (cpu.mode, cpu.model, cpu.vendor) == ('custom', 'EPYC-Rome', 'AMD')
    assert ('require', 'hypervisor') in cpu.features
    assert 'x2apic' in cpu.required_features()


def test_compare_with_error_names_the_missing_features():
    err = ('error: Failed to compare hypervisor CPU with /dev/stdin\n'
           'error: the CPU is incompatible with host CPU: Host CPU does not '
           'provide required features: hle, rtm\n')
    result = virsh.parse_compare(1, '', err)
    assert (result.compatible, result.result) == (False, 'incompatible')
    assert result.message == ('the CPU is incompatible with host CPU: Host '
                              'CPU does not provide required features: hle, '
                              'rtm')
    result = virsh.parse_compare(1, '', 'error: Failed to compare hypervisor '
                                 'CPU with /dev/stdin\nerror: the CPU is '
                                 'incompatible with host CPU: host CPU vendor '
                                 'does not match required CPU vendor Intel')
    assert 'vendor Intel' in result.message


def test_compare_runs_with_error_as_the_sudoers_rule_allows():
    """remote.compare_cpu asks for libvirt's reason (--error); the
    documented least-privilege sudoers rule lists that exact command."""
    import pathlib
    from unittest import mock

    from osc_cpumigrate.host import profiles
    from osc_cpumigrate.host import remote
    from osc_cpumigrate.types import HostOptions

    host = remote.RemoteHost('cmp1', HostOptions(), mock.Mock(),
                             profiles.get_profile('default'))
    seen = []

    def run_input(argv, data, what):
        seen.append(argv)
        return remote.Result(1, '', 'error: Failed to compare hypervisor CPU '
                             'with /dev/stdin\nerror: the CPU is incompatible '
                             'with host CPU: Host CPU does not provide '
                             'required features: avx512f\n')

    host._run_input = run_input
    result = host.compare_cpu('<cpu/>')
    assert not result.compatible and result.message.endswith('avx512f')
    [argv] = seen
    assert tuple(argv) == ('virsh', 'hypervisor-cpu-compare', '--error',
                           '/dev/stdin')
    rule = (pathlib.Path(__file__).parents[3] / 'doc' / 'source' / 'admin'
            / 'sudoers-cpumigrate').read_text()
    assert ('TZ\\=UTC %s,' % ' '.join(argv)) in rule
