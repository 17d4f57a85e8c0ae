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

"""The typed rows and their cells (workflow.rows, commands.columns)."""

import dataclasses

import pytest

from osc_cpumigrate.commands import columns
from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import GuestCpu
from osc_cpumigrate.workflow import rows


def test_column_names_come_from_the_fields():
    assert rows.columns(rows.PinRow) == (
        'ID', 'Name', 'Host', 'Status', 'Result', 'Reason', 'CPU Before',
        'CPU After')
    assert rows.columns(rows.FinalizeRow) == rows.columns(rows.PinRow)
    assert rows.columns(rows.MigrateRow) == (
        'ID', 'Name', 'Host', 'Status', 'Result', 'Reason', 'Source',
        'Destination', 'Seconds')
    assert rows.columns(rows.PrepareRow)[:4] == (
        'Host', 'Service Status', 'Service State', 'Disabled Reason')
    assert rows.columns(rows.CheckRow) == ('Check', 'Host', 'Server',
                                           'Verdict', 'Reason')
    assert rows.cpu_columns(rows.StatusRow) == ('CPU',)
    assert rows.cpu_columns(rows.HostRow) == ('CPU', 'Original CPU')


def test_rows_are_frozen_and_keyword_only():
    row = rows.PinRow(id='1', name='vm', host='h', status='ACTIVE',
                      result=rows.PINNED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.result = rows.FAILED
    with pytest.raises(TypeError):
        rows.PinRow('1', 'vm', 'h', 'ACTIVE', rows.PINNED)


def test_cpu_of_guest_and_settings():
    guest = GuestCpu('custom', 'SandyBridge-IBRS', 'Intel',
                     tuple(('require', 'f%02d' % i) for i in range(29))
                     + (('disable', 'hle'),))
    cpu = rows.Cpu.of_guest(guest)
    assert cpu.short() == 'SandyBridge-IBRS +30 flags'
    assert cpu.full().startswith('SandyBridge-IBRS +f00 +f01')
    assert cpu.as_dict()['flags'][-1] == '-hle'
    assert rows.Cpu.of_guest(GuestCpu(None, None)) is None
    assert rows.Cpu.of_guest(GuestCpu('host-passthrough', None)).short() == (
        'host-passthrough')
    default = rows.Cpu.of_settings(CpuSettings())
    assert default.short() == default.full() == 'host-model (default)'
    assert default.as_dict() == {'mode': None, 'model': None, 'flags': []}
    kvm = rows.Cpu.of_settings(CpuSettings('custom', ('kvm64',),
                                           ('pcid', '-hle')))
    assert kvm.short() == 'kvm64 +2 flags'
    assert kvm.full() == 'kvm64 +pcid -hle'
    assert rows.Cpu('custom', 'kvm64', ('+pcid',)).short() == (
        'kvm64 +1 flag')


def test_cpu_cells_short_long_and_machine():
    cpu = rows.Cpu('custom', 'kvm64', ('+pcid', '+ssbd'))
    row = rows.PinRow(id='1', name='vm', host='h', status='ACTIVE',
                      result=rows.PINNED, cpu_after=cpu)
    names, [data] = columns.listing(rows.PinRow, [row])
    cells = dict(zip(names, data, strict=True))
    assert cells['CPU After'].human_readable() == 'kvm64 +2 flags'
    assert cells['CPU After'].machine_readable() == {
        'mode': 'custom', 'model': 'kvm64', 'flags': ['+pcid', '+ssbd']}
    assert cells['CPU Before'].machine_readable() is None
    assert cells['CPU Before'].human_readable() == ''
    assert cells['Result'] == 'pinned'
    names, [data] = columns.listing(rows.PinRow, [row], long=True)
    cells = dict(zip(names, data, strict=True))
    assert cells['CPU After'].human_readable() == 'kvm64 +pcid +ssbd'
    assert columns.listing(rows.PinRow, []) == (rows.columns(rows.PinRow),
                                                [])


def test_show_one():
    host = rows.HostRow(
        host='h', service_status='enabled', service_state='up',
        disabled_reason='', nova_conf='normal', path='/etc/nova/nova.conf',
        cpu=rows.Cpu(None, None), original_cpu=rows.Cpu(None, None),
        backup='', changed_at='', destinations='', servers=0)
    names, data = columns.show(host)
    assert names[0] == 'Host' and data[0] == 'h'
    assert dict(zip(names, data, strict=True))['CPU'].human_readable() == (
        'host-model (default)')
