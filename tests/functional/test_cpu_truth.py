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

"""End to end: the transition CPU as the operator typed it, and a
finalized server after its host-model was renamed.

One server goes AMD -> Intel with ``--cpu-model KVM64 --cpu-flag SSE4.2``
(Nova maps the model case-insensitively and lowercases the flag, so the
domain runs ``kvm64`` + ``sse4.2``); after finalize, a TSX-disabling
microcode update on the destination (``labctl drift intel-2 noTSX``)
renames its host-model, and the finalized server must stay finalized.
One test, so the lab's state is built once.
"""

import json

import pytest

from tests.functional.labclient import host_of
from tests.functional.test_runbook import boot
from tests.functional.test_runbook import by
from tests.functional.test_runbook import cpumigrate
from tests.functional.test_runbook import domain_model
from tests.functional.test_runbook import nova_conf
from tests.functional.test_runbook import run
from tests.functional.test_runbook import ssh

pytestmark = pytest.mark.lab

SOURCE, DEST = 'amd-2', 'intel-2'


def guest_record(env, sid):
    out = run(env, [env['LABCTL'], 'guests', '--host', DEST]).stdout
    for line in out.splitlines():
        if line.strip() and json.loads(line)['uuid'] == sid:
            return json.loads(line)
    raise AssertionError('no lab guest %s on %s' % (sid, DEST))


def host_model(env, host):
    import xml.etree.ElementTree as ET
    caps = ET.fromstring(ssh(env, host, 'virsh', 'domcapabilities'))
    return caps.find("cpu/mode[@name='host-model']").findtext('model')


def test_typed_cpu_end_to_end_and_a_renamed_host_model(lab_env):
    [sid] = boot(lab_env, SOURCE, 1, 'truth')
    dest = ['--destination', DEST]
    before = nova_conf(lab_env, SOURCE)
    # proven before any change: the source (an EPYC) lacks AVX-512, and
    # libvirt says so; a feature no CPU map has is refused outright
    code, rows, err = cpumigrate(lab_env, 'prepare', SOURCE, '--cpu-model',
                                 'kvm64', '--cpu-flag', 'AVX512F', *dest,
                                 ok=False)
    assert code == 1 and 'refused by amd-2' in err, err
    assert 'Host CPU does not provide required features: avx512f' in err
    code, rows, err = cpumigrate(lab_env, 'prepare', SOURCE, '--cpu-model',
                                 'kvm64', '--cpu-flag', 'sse9', *dest,
                                 ok=False)
    assert code == 1 and "unknown CPU feature 'sse9'" in err, err
    assert nova_conf(lab_env, SOURCE) == before

    code, [row], err = cpumigrate(lab_env, 'prepare', SOURCE, '--cpu-model',
                                  'KVM64', '--cpu-flag', 'SSE4.2', *dest)
    assert row['Result'] == 'prepared', err
    assert row['CPU After'] == {'mode': 'custom', 'model': 'kvm64',
                                'flags': ['+sse4.2']}
    conf = nova_conf(lab_env, SOURCE)
    assert 'cpu_models = kvm64\n' in conf
    assert 'cpu_model_extra_flags = sse4.2\n' in conf

    rows = by(cpumigrate(lab_env, 'pin', SOURCE, '--auto-approve')[1])
    assert rows[sid]['Result'] == 'pinned', rows
    assert rows[sid]['CPU After']['model'] == 'kvm64'
    assert '+sse4.2' in rows[sid]['CPU After']['flags']

    rows = by(cpumigrate(lab_env, 'migrate', SOURCE, *dest)[1])
    assert rows[sid]['Result'] == 'live-migrated', rows
    assert host_of(lab_env, sid) == DEST

    [row] = cpumigrate(lab_env, 'finalize', DEST, '--auto-approve')[1]
    assert (row['Result'], row['CPU After']['model']) == (
        'finalized', 'Skylake-Client')

    # A microcode update renames the host-model; the guest keeps the CPU it
    # started with: finalized all the same, not restarted again.
    run(lab_env, [lab_env['LABCTL'], 'drift', DEST, 'noTSX'])
    assert host_model(lab_env, DEST) == 'Skylake-Client-noTSX-IBRS'
    before = guest_record(lab_env, sid)
    [row] = cpumigrate(lab_env, 'finalize', DEST, '--auto-approve')[1]
    assert row['Result'] == 'already-finalized', row
    [row] = cpumigrate(lab_env, 'status', DEST)[1]
    assert row['Phase'] == 'finalized', row
    after = guest_record(lab_env, sid)
    assert (after['power_cuts'], after['clean_shutdowns']) == (
        before['power_cuts'], before['clean_shutdowns'])
    assert domain_model(lab_env, DEST, sid) == 'Skylake-Client'
