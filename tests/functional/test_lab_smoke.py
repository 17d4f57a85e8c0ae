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

"""Smoke tests of the lab itself: does it model what cpumigrate relies on?"""
import json
import time
import xml.etree.ElementTree as ET

import pytest

from tests.functional.labclient import host_of
from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run

pytestmark = pytest.mark.lab

def ssh(env, host, command, ok=True):
    return run(env, ['ssh', '-F', env['OS_CPUMIGRATE_SSH_CONFIG'], '-o',
                     'BatchMode=yes', host, command], ok=ok)


def boot(env, host, prefix):
    out = run(env, [env['LABCTL'], 'boot', '--host', host, '--count', '1',
                    '--name-prefix', prefix]).stdout
    return out.split()[0]


def cpu_of(env, host, sid):
    xml = ssh(env, host, 'sudo -n virsh dumpxml %s' % sid).stdout
    return ET.fromstring(xml).find('cpu')


def wait_fresh_heartbeat(env, host, since, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for svc in osc(env, 'compute', 'service', 'list', '--service',
                       'nova-compute', '--host', host):
            ts = svc.get('Updated At') or ''
            t = time.mktime(time.strptime(ts.split('.')[0],
                                          '%Y-%m-%dT%H:%M:%S')) - \
                time.timezone if ts else 0
            if svc['State'] == 'up' and t > since:
                return
        time.sleep(1)
    raise AssertionError('no fresh heartbeat from %s' % host)


def test_four_computes_up(lab_env):
    services = osc(lab_env, 'compute', 'service', 'list', '--service',
                   'nova-compute')
    assert sorted(s['Host'] for s in services) == [
        'amd-1', 'amd-2', 'intel-1', 'intel-2']
    assert all(s['State'] == 'up' for s in services)


def test_cpu_info_vendors_differ(lab_env):
    vendors = {}
    for host in ('intel-1', 'amd-1'):
        hyp = osc(lab_env, '--os-compute-api-version', '2.87', 'hypervisor',
                  'show', host)
        info = hyp['cpu_info']
        if isinstance(info, str):
            info = json.loads(info)
        vendors[host] = info['vendor']
    assert vendors == {'intel-1': 'Intel', 'amd-1': 'AMD'}


def test_member_gets_403_on_services(lab_env):
    env = dict(lab_env, OS_CLOUD='cpumigrate-lab-member')
    proc = run(env, [OPENSTACK, 'compute', 'service', 'list'], ok=False)
    assert proc.returncode != 0
    assert '403' in proc.stderr or 'orbidden' in proc.stderr


def test_domain_xml_over_ssh_shows_host_model(lab_env):
    sid = boot(lab_env, 'intel-1', 'smoke-xml')
    cpu = cpu_of(lab_env, 'intel-1', sid)
    assert cpu.get('mode') == 'custom'
    # the Xeon Gold 6148's host-model as libvirt recorded it
    assert cpu.findtext('model') == 'Skylake-Client'
    assert cpu.findtext('vendor') == 'Intel'
    proc = ssh(lab_env, 'intel-1', 'sudo -n virsh dumpxml 00000000-0000-'
               '0000-0000-000000000000', ok=False)
    assert proc.returncode != 0 and 'failed to get domain' in proc.stderr
    run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid])


def test_runbook_in_miniature(lab_env):
    """Plain live migration fails on the CPU; kvm64 + hard reboot fixes it."""
    sid = boot(lab_env, 'intel-1', 'smoke-lm')
    run(lab_env, [OPENSTACK, 'server', 'migrate', '--live-migration',
                  '--host', 'amd-1', '--wait', sid], ok=False)
    assert host_of(lab_env, sid) == 'intel-1'
    assert osc(lab_env, 'server', 'show', sid)['status'] == 'ACTIVE'
    details = ''
    for ev in osc(lab_env, 'server', 'event', 'list', sid):
        if ev['Action'] == 'live-migration':
            shown = osc(lab_env, '--os-compute-api-version', '2.84', 'server',
                        'event', 'show', sid, ev['Request ID'])
            details += json.dumps(shown)
    assert 'Unacceptable CPU info' in details

    conf = '/etc/nova/nova.conf'
    ssh(lab_env, 'intel-1', "sudo -n cp -p %s %s.smoke" % (conf, conf))
    try:
        ssh(lab_env, 'intel-1',
            "sudo -n sed -i 's/^\\[libvirt\\]$/[libvirt]\\ncpu_mode = custom"
            "\\ncpu_models = kvm64/' %s" % conf)
        since = time.time()
        ssh(lab_env, 'intel-1', 'sudo -n systemctl restart nova-compute')
        wait_fresh_heartbeat(lab_env, 'intel-1', since)
        run(lab_env, [OPENSTACK, 'server', 'reboot', '--hard', '--wait', sid])
        assert cpu_of(lab_env, 'intel-1', sid).findtext('model') == 'kvm64'
        run(lab_env, [OPENSTACK, 'server', 'migrate', '--live-migration',
                      '--host', 'amd-1', '--wait', sid])
        assert host_of(lab_env, sid) == 'amd-1'
        # the guest's CPU moved unchanged
        assert cpu_of(lab_env, 'amd-1', sid).findtext('model') == 'kvm64'
    finally:
        ssh(lab_env, 'intel-1', "sudo -n mv -f %s.smoke %s" % (conf, conf))
        since = time.time()
        ssh(lab_env, 'intel-1', 'sudo -n systemctl restart nova-compute')
        wait_fresh_heartbeat(lab_env, 'intel-1', since)
        run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid], ok=False)
