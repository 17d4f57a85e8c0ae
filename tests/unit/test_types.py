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

"""The shared value types and the import layering they make possible."""

from __future__ import annotations

import ast
import dataclasses
import datetime
import pathlib
import subprocess
import sys

import pytest

from osc_cpumigrate import errors
from osc_cpumigrate import types
from osc_cpumigrate.host import api as host_api

PACKAGE = pathlib.Path(types.__file__).parent


def test_cpu_settings_model_and_describe():
    settings = types.CpuSettings('custom', ('kvm64', 'qemu64'), ('+pcid',))
    assert settings.model == 'kvm64'
    assert settings.describe() == 'custom kvm64 qemu64 +pcid'
    assert types.CpuSettings().model is None
    assert types.CpuSettings().describe() == 'default'


def test_guest_cpu_required_features():
    cpu = types.GuestCpu('custom', 'Westmere', features=(
        ('require', 'pcid'), ('force', 'ssbd'), ('disable', 'vmx'),
        ('optional', 'x2apic')))
    assert cpu.required_features() == {'pcid', 'ssbd'}


def test_capacity_fits_and_minus():
    free = types.Capacity(4, 8192, 40)
    assert free.fits(4, 8192, 40)
    assert not free.fits(5, 1, 1)
    assert not free.fits(1, 8193, 1)
    assert not free.fits(1, 1, 41)
    assert free.minus(1, 1024, 10) == types.Capacity(3, 7168, 30)


@pytest.mark.parametrize('value', [
    types.HostOptions(),
    types.CpuSettings(),
    types.ConfState('/etc/nova/nova.conf', '0' * 64, types.CpuSettings(),
                    False, types.CpuSettings(), None,
                    datetime.datetime.now(datetime.timezone.utc)),
    types.Change('/p', types.CpuSettings(), types.CpuSettings(), None, '',
                 False),
    types.GuestCpu('host-model', None),
    types.HostCpu('x86_64', 'Intel', 'Skylake', frozenset()),
    types.CompareResult(True, 'identical'),
    types.Capacity(1, 1, 1),
])
def test_value_types_are_frozen(value):
    field = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)


def test_host_api_still_exports_the_moved_names():
    for name in ('HostOptions', 'CpuSettings', 'ConfState', 'Change',
                 'GuestCpu', 'HostCpu', 'CompareResult'):
        assert getattr(host_api, name) is getattr(types, name)
    assert host_api.HostError is errors.HostError


def test_host_error_is_one_line_command_error():
    from osc_lib import exceptions as osc_exc

    @errors.translate_errors
    def take_action(self, parsed_args):
        raise errors.HostError('nova.conf on cmp1: unreadable')

    with pytest.raises(osc_exc.CommandError, match='^nova.conf on cmp1: '
                       'unreadable$'):
        take_action(None, None)


def _imports() -> dict[str, set[str]]:
    """Module -> the osc_cpumigrate modules it imports (lazy ones too)."""
    names = {}
    for path in PACKAGE.rglob('*.py'):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        names['.'.join(parts)] = path
    graph = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update('%s.%s' % (node.module, a.name)
                             for a in node.names)
        # importing a package's own parent package is not an edge
        graph[name] = {m for m in found if m in names and m != name
                       and not name.startswith(m + '.')}
    return graph


def test_osc_cpumigrate_has_no_import_cycle():
    graph = _imports()
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycle = stack[stack.index(name):] + [name]
            pytest.fail('import cycle: %s' % ' -> '.join(cycle))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, stack + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_layers_below_the_host_do_not_import_it():
    graph = _imports()
    base = {'osc_cpumigrate.types', 'osc_cpumigrate.errors'}
    assert graph['osc_cpumigrate.types'] == set()
    assert graph['osc_cpumigrate.errors'] == set()
    assert graph['osc_cpumigrate.poll'] <= base
    for name, deps in graph.items():
        if name.startswith('osc_cpumigrate.cpu.'):
            outside = {d for d in deps
                       if not d.startswith('osc_cpumigrate.cpu')}
            assert outside <= base, (name, outside)
        if name.startswith('osc_cpumigrate.host.') and name != (
                'osc_cpumigrate.host.api'):
            assert 'osc_cpumigrate.host.api' not in deps, name


def test_types_errors_poll_import_cheaply():
    """Command modules import these at every ``openstack`` start."""
    code = (
        'import sys\n'
        'import osc_cpumigrate.types, osc_cpumigrate.errors\n'
        'import osc_cpumigrate.poll\n'
        'heavy = ("fabric", "paramiko", "invoke", "configupdater",\n'
        '         "osc_cpumigrate.host", "osc_cpumigrate.cloud",\n'
        '         "osc_cpumigrate.workflow")\n'
        'print(sorted(m for m in sys.modules if m.startswith(heavy)))\n')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == '[]'
