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

"""The documentation: it builds with ``sphinx-build -W``, renders every
command, and its sudoers rule is one sudo accepts."""

import importlib.metadata
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]
DOC = ROOT / 'doc' / 'source'


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    pytest.importorskip('sphinx')
    out = tmp_path_factory.mktemp('html')
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '-q', '-b', 'html', str(DOC),
         str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_command_is_rendered(built):
    page = (built / 'cli' / 'index.html').read_text()
    names = [ep.name.replace('_', ' ') for ep in
             importlib.metadata.entry_points(group='openstack.cpumigrate.v1')]
    assert len(names) >= 6
    for name in names:
        assert 'id="%s"' % name.replace(' ', '-') in page, name
    assert page.count('Example:') >= len(names)


def test_release_notes_are_rendered(built):
    # reno renders the notes committed to git
    page = (built / 'releasenotes.html').read_text()
    assert 'labctl' in page


@pytest.mark.skipif(not shutil.which('visudo'), reason='no visudo')
def test_sudoers_rule_parses():
    proc = subprocess.run(['visudo', '-c', '-f',
                           str(DOC / 'admin' / 'sudoers-cpumigrate')],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
