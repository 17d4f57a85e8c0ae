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

"""The package as users get it: the sdist and the wheel build without
warnings, and ``pip install`` of the wheel into a venv that has nothing
else gives a working ``openstack cpumigrate`` with correct metadata (the
requirements are complete and the entry points right)."""

import email
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).parents[2]
#: pbr's own MANIFEST template ("global-exclude *.pyc") warns when a tree
#: has no .pyc file to exclude, whatever the project; nothing else may warn.
PBR_TEMPLATE = ("warning: no previously-included files matching '*.pyc' "
                "found anywhere in distribution")


def run(*argv, **kwargs):
    return subprocess.run([str(a) for a in argv], capture_output=True,
                          text=True, **kwargs)


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    env = dict(os.environ)
    env.pop('PYTHONDONTWRITEBYTECODE', None)   # else: "byte-compiling is
    #                                            disabled" warnings
    proc = run(sys.executable, '-m', 'build', '-o', out, ROOT, env=env)
    if proc.returncode != 0 and 'Could not find a version' in proc.stderr:
        pytest.skip('no package index reachable')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout + proc.stderr


def test_build_prints_no_warnings(dist):
    _, log = dist
    warnings = [line for line in log.splitlines()
                if 'warn' in line.lower() and line.strip() != PBR_TEMPLATE]
    assert warnings == []


def test_wheel_metadata(dist):
    out, _ = dist
    wheel = next(out.glob('osc_cpumigrate-*.whl'))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith('.dist-info/METADATA'))
        meta = email.message_from_string(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace('METADATA',
                                                 'entry_points.txt')).decode()
    assert meta['Name'] == 'osc-cpumigrate'
    assert meta['License-Expression'] == 'Apache-2.0'
    assert meta['Description-Content-Type'] == 'text/x-rst'
    assert meta['Requires-Python'] == '>=3.10'
    assert any(n.endswith('.dist-info/licenses/LICENSE') for n in names)
    urls = meta.get_all('Project-URL')
    assert any(u.startswith('Repository, ') for u in urls), urls
    requires = meta.get_all('Requires-Dist')
    assert 'openstacksdk>=4.1.0' in requires
    assert any(r.startswith('invoke>=') for r in requires)
    assert meta.get_payload().lstrip().startswith('==============\n'
                                                  'osc-cpumigrate')
    assert 'cpumigrate_migrate = osc_cpumigrate.commands.migrate:' \
        'MigrateServers' in entry_points
    assert not any(n.startswith('tests/') for n in names)


def test_wheel_into_empty_venv_gives_a_working_plugin(dist, tmp_path):
    out, _ = dist
    wheel = next(out.glob('osc_cpumigrate-*.whl'))
    venv = tmp_path / 'venv'
    run(sys.executable, '-m', 'venv', venv, check=True)
    pip = run(venv / 'bin' / 'pip', 'install', '-q', wheel)
    assert pip.returncode == 0, pip.stderr[-3000:]
    out = run(venv / 'bin' / 'openstack', 'cpumigrate', '--help')
    listed = out.stdout + out.stderr
    for verb in ('check', 'prepare', 'pin', 'migrate', 'finalize', 'status'):
        assert 'cpumigrate %s' % verb in listed
    help_ = run(venv / 'bin' / 'openstack', 'help', 'cpumigrate', 'migrate',
                check=True).stdout
    assert '--destination <host>' in help_
    assert 'Example::' in help_
    check = run(venv / 'bin' / 'pip', 'check')
    assert check.returncode == 0, check.stdout
