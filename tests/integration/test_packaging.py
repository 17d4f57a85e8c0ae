"""``pip install .`` into a venv that has nothing else gives a working
``openstack cpumigrate``: the requirements are complete and the entry
points right."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]


@pytest.mark.integration
def test_pip_install_into_empty_venv(tmp_path):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    pip = subprocess.run([str(venv / 'bin' / 'pip'), 'install', '-q',
                          str(ROOT)], capture_output=True, text=True)
    if pip.returncode != 0 and 'Could not find a version' in pip.stderr:
        pytest.skip('no package index reachable')
    assert pip.returncode == 0, pip.stderr[-3000:]
    out = subprocess.run([str(venv / 'bin' / 'openstack'), 'cpumigrate',
                          '--help'], capture_output=True, text=True)
    listed = out.stdout + out.stderr
    for verb in ('check', 'prepare', 'pin', 'migrate', 'finalize', 'status'):
        assert 'cpumigrate %s' % verb in listed
    help_ = subprocess.run([str(venv / 'bin' / 'openstack'), 'help',
                            'cpumigrate', 'migrate'],
                           capture_output=True, text=True, check=True).stdout
    assert '--destination <host>' in help_
