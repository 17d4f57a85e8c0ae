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

"""The lab's hosts have real CPUs and answer like libvirt 9.0 does.

The CPUs come from libvirt's own test data (tests/lab/cputestdata): the
Intel hosts are a Xeon Gold 6148, the AMD hosts an EPYC 7502.
"""
import base64
import json
import os
import time
import xml.etree.ElementTree as ET

import pytest

from osc_cpumigrate.host import virsh
from tests.functional.labclient import host_of
from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run
from tests.functional.test_lab_smoke import boot
from tests.functional.test_lab_smoke import cpu_of
from tests.functional.test_lab_smoke import ssh
from tests.functional.test_lab_smoke import wait_fresh_heartbeat

pytestmark = pytest.mark.lab

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'lab', 'cputestdata')
XEON = os.path.join(DATA, 'x86_64-cpuid-Xeon-Gold-6148-%s.xml')
DEFAULT_HOSTS = ('intel-1:Xeon-Gold-6148,intel-2:Xeon-Gold-6148,'
                 'amd-1:EPYC-7502-32-Core,amd-2:EPYC-7502-32-Core')


def recorded(path):
    return ET.parse(path).getroot()


def features(cpu, policy=False):
    return [(f.get('policy'), f.get('name')) if policy else f.get('name')
            for f in cpu.findall('feature')]


def virsh_xml(env, host, args):
    return ET.fromstring(ssh(env, host, 'sudo -n virsh %s' % args).stdout)


def host_model(env, host):
    return virsh_xml(env, host, 'domcapabilities').find(
        "cpu/mode[@name='host-model']")


def compare(env, host, xml, *options):
    """virsh hypervisor-cpu-compare of ``xml`` on ``host``."""
    blob = base64.b64encode(xml.encode()).decode()
    path = '/tmp/cpumigrate-lab-cpu-%d.xml' % os.getpid()   # /tmp is shared
    return ssh(env, host, 'echo %s | base64 -d > %s && sudo -n virsh '
               'hypervisor-cpu-compare %s %s' % (blob, path, ' '.join(
                   options), path), ok=False), path


def cpu_info(env, host):
    info = osc(env, '--os-compute-api-version', '2.87', 'hypervisor',
               'show', host)['cpu_info']
    return json.loads(info) if isinstance(info, str) else info


def test_capabilities_raw_cpu_and_domcapabilities_host_model(lab_env):
    raw = virsh_xml(lab_env, 'intel-1', 'capabilities')
    cpu = raw.find('host/cpu')
    want = recorded(XEON % 'host')
    assert cpu.findtext('model') == want.findtext('model') == 'Skylake-Client'
    assert features(cpu) == features(want)
    assert 'vmx' in features(cpu) and 'hypervisor' not in features(cpu)
    machines = {m.text: m.get('canonical') for m in raw.iter('machine')}
    assert machines['q35'] == 'pc-q35-7.2' and 'pc-q35-2.12' in machines

    hm = host_model(lab_env, 'intel-1')
    want = recorded(XEON % 'json')
    assert hm.findtext('model') == want.findtext('model')
    assert hm.find('model').get('fallback') == 'forbid'
    assert features(hm, True) == features(want, True)
    assert 'hypervisor' in features(hm) and 'vmx' not in features(hm)
    dom = virsh_xml(lab_env, 'intel-1', 'domcapabilities --machine q35')
    assert dom.findtext('machine') == 'pc-q35-7.2'

    # Nova's cpu_info is the raw host CPU (LibvirtDriver._get_cpu_info)
    info = cpu_info(lab_env, 'intel-1')
    assert info['model'] == 'Skylake-Client'
    assert set(info['features']) == set(features(cpu))
    # the tool's parser takes both
    host = virsh.parse_domcapabilities(ET.tostring(dom, encoding='unicode'))
    assert host['host_model'] == 'Skylake-Client'
    assert 'avx512f' in host['host_model_features']


def test_host_model_guest_shows_the_expanded_host_model(lab_env):
    sid = boot(lab_env, 'intel-1', 'cpus-hm')
    try:
        live = cpu_of(lab_env, 'intel-1', sid)
        assert live.attrib == {'mode': 'custom', 'match': 'exact',
                               'check': 'full'}
        assert live.find('model').get('fallback') == 'forbid'
        hm = host_model(lab_env, 'intel-1')
        assert live.findtext('model') == hm.findtext('model')
        assert live.findtext('vendor') == 'Intel'
        assert features(live, True) == features(hm, True)
        dom = virsh_xml(lab_env, 'intel-1', 'dumpxml %s' % sid)
        assert dom.find('os/type').get('machine') == 'pc-q35-7.2'
        inactive = virsh_xml(lab_env, 'intel-1', 'dumpxml --inactive %s'
                             % sid).find('cpu')
        assert inactive.get('mode') == 'host-model'
        assert virsh.parse_guest_cpu(ET.tostring(
            dom, encoding='unicode')).model == 'Skylake-Client'
    finally:
        run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid], ok=False)


def test_custom_guest_lists_what_qemu_turned_on_and_off(lab_env):
    conf = '/etc/nova/nova.conf'
    ssh(lab_env, 'amd-2', 'sudo -n cp -p %s %s.cpus' % (conf, conf))
    sid = None
    try:
        ssh(lab_env, 'amd-2',
            "sudo -n sed -i 's/^\\[libvirt\\]$/[libvirt]\\ncpu_mode = custom"
            "\\ncpu_models = EPYC-Rome\\ncpu_model_extra_flags = ibpb/' %s"
            % conf)
        since = time.time()
        ssh(lab_env, 'amd-2', 'sudo -n systemctl restart nova-compute')
        wait_fresh_heartbeat(lab_env, 'amd-2', since)
        sid = boot(lab_env, 'amd-2', 'cpus-custom')
        live = cpu_of(lab_env, 'amd-2', sid)
        assert live.attrib == {'mode': 'custom', 'match': 'exact',
                               'check': 'full'}
        assert live.findtext('model') == 'EPYC-Rome'
        # the configured flag, then x2apic/hypervisor (QEMU turns them on
        # under KVM) and svm (off for named models)
        assert features(live, True) == [
            ('require', 'ibpb'), ('require', 'x2apic'),
            ('require', 'hypervisor'), ('disable', 'svm')]
        inactive = virsh_xml(lab_env, 'amd-2', 'dumpxml --inactive %s'
                             % sid).find('cpu')
        assert inactive.get('check') == 'partial'
        assert inactive.find('model').get('fallback') == 'allow'
        assert features(inactive, True) == [('require', 'ibpb')]
    finally:
        ssh(lab_env, 'amd-2', 'sudo -n mv -f %s.cpus %s' % (conf, conf))
        since = time.time()
        ssh(lab_env, 'amd-2', 'sudo -n systemctl restart nova-compute')
        wait_fresh_heartbeat(lab_env, 'amd-2', since)
        if sid:
            run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid],
                ok=False)


def test_compare_names_what_the_host_lacks(lab_env):
    sid = boot(lab_env, 'intel-1', 'cpus-cmp')
    try:
        xml = ssh(lab_env, 'intel-1', 'sudo -n virsh dumpxml %s' % sid).stdout
        proc, _path = compare(lab_env, 'intel-2', xml)
        assert proc.returncode == 0 and 'is identical to' in proc.stdout
        proc, path = compare(lab_env, 'amd-1', xml)
        assert proc.returncode == 1
        assert virsh.parse_compare(proc.returncode, proc.stdout,
                                   proc.stderr).result == 'incompatible'
        proc, path = compare(lab_env, 'amd-1', xml, '--error')
        assert proc.returncode == 1 and proc.stdout.strip() == ''
        assert proc.stderr.splitlines() == [
            'error: Failed to compare hypervisor CPU with %s' % path,
            'error: the CPU is incompatible with host CPU: host CPU vendor '
            'does not match required CPU vendor Intel']
        # without the vendor: the features, in libvirt's CPU map order
        proc, path = compare(lab_env, 'amd-1', xml.replace(
            '<vendor>Intel</vendor>', ''), '--error')
        reason = proc.stderr.splitlines()[-1]
        prefix = ('error: the CPU is incompatible with host CPU: Host CPU '
                  'does not provide required features: ')
        assert reason.startswith(prefix)
        missing = reason[len(prefix):].split(', ')
        assert {'hle', 'rtm', 'avx512f', 'pcid'} <= set(missing)
        assert missing.index('pcid') < missing.index('avx512f')
        result = virsh.parse_compare(proc.returncode, proc.stdout,
                                     proc.stderr)
        assert not result.compatible and 'avx512f' in result.message

        # Nova compares a host-model guest by the source's raw cpu_info
        # (features QEMU never offers guests): even a same-CPU move fails,
        # as Nova bug 2039803 reports.
        run(lab_env, [OPENSTACK, 'server', 'migrate', '--live-migration',
                      '--host', 'intel-2', '--wait', sid], ok=False)
        assert host_of(lab_env, sid) == 'intel-1'
        events = [e for e in osc(lab_env, 'server', 'event', 'list', sid)
                  if e['Action'] == 'live-migration']
        shown = osc(lab_env, '--os-compute-api-version', '2.84', 'server',
                    'event', 'show', sid, events[0]['Request ID'])
        assert 'Unacceptable CPU info' in json.dumps(shown)
    finally:
        run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid], ok=False)


def test_host_from_a_cputestdata_file_with_its_own_versions(lab_env):
    spec = DEFAULT_HOSTS.replace(
        'intel-2:Xeon-Gold-6148',
        'intel-2:%s:libvirt=10.0.0:qemu=8.2.0' % (XEON % 'json'))
    run(lab_env, [lab_env['LABCTL'], 'up', '--hosts', spec])
    try:
        out = ssh(lab_env, 'intel-2', 'sudo -n virsh version').stdout
        assert virsh.parse_version(out) == ('10.0.0', '8.2.0')
        assert host_model(lab_env, 'intel-2').findtext(
            'model') == 'Skylake-Client'
        hyp = osc(lab_env, 'hypervisor', 'show', 'intel-2')
        assert hyp['hypervisor_version'] in (8002000, '8002000', '8.2.0')
        sid = boot(lab_env, 'intel-2', 'cpus-qemu82')
        dom = virsh_xml(lab_env, 'intel-2', 'dumpxml %s' % sid)
        assert dom.find('os/type').get('machine') == 'pc-q35-8.2'
        run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid])
    finally:
        run(lab_env, [lab_env['LABCTL'], 'up', '--hosts', DEFAULT_HOSTS])
    out = ssh(lab_env, 'intel-2', 'sudo -n virsh version').stdout
    assert virsh.parse_version(out) == ('9.0.0', '7.2.0')


def test_host_model_drift(lab_env):
    labctl = lab_env['LABCTL']
    old = boot(lab_env, 'intel-1', 'cpus-drift-old')
    new = None
    out = run(lab_env, [labctl, 'drift', 'intel-1', 'noTSX']).stdout
    try:
        assert 'Skylake-Client -> Skylake-Client-noTSX-IBRS' in out
        assert '-hle -rtm' in out
        hm = host_model(lab_env, 'intel-1')
        assert hm.findtext('model') == 'Skylake-Client-noTSX-IBRS'
        new = boot(lab_env, 'intel-1', 'cpus-drift-new')
        assert cpu_of(lab_env, 'intel-1', new).findtext(
            'model') == 'Skylake-Client-noTSX-IBRS'
        # the running guest keeps its CPU ... which the host no longer has
        xml = ssh(lab_env, 'intel-1', 'sudo -n virsh dumpxml %s' % old).stdout
        assert ET.fromstring(xml).find('cpu').findtext(
            'model') == 'Skylake-Client'
        proc, _path = compare(lab_env, 'intel-1', xml.replace(
            '<vendor>Intel</vendor>', ''), '--error')
        assert proc.stderr.splitlines()[-1].endswith(
            'Host CPU does not provide required features: hle, rtm')
        # nova-compute keeps the capabilities it read at start
        assert cpu_info(lab_env, 'intel-1')['model'] == 'Skylake-Client'
    finally:
        run(lab_env, [labctl, 'drift', 'intel-1', 'clear'])
        for sid in (old, new):
            if sid:
                run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid],
                    ok=False)
    assert host_model(lab_env, 'intel-1').findtext(
        'model') == 'Skylake-Client'
