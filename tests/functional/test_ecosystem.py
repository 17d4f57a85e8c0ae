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

"""The plugin as an OSC user meets it, against the lab: settings from the
cloud's ``cpumigrate:`` key in clouds.yaml, ``-q`` and ``--log-file``."""

import re

import pytest
import yaml

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import run

pytestmark = pytest.mark.lab

CHECK = ['cpumigrate', 'check', 'intel-1', '--destination', 'amd-1',
         '-f', 'json']


def cloud_env(lab_env, tmp_path, settings):
    """The lab's environment with its clouds.yaml given a ``cpumigrate:``
    mapping, and no OS_CPUMIGRATE_SSH_CONFIG."""
    with open(lab_env['OS_CLIENT_CONFIG_FILE']) as handle:
        clouds = yaml.safe_load(handle)
    clouds['clouds'][lab_env['OS_CLOUD']]['cpumigrate'] = settings
    path = tmp_path / 'clouds.yaml'
    path.write_text(yaml.safe_dump(clouds))
    env = dict(lab_env, OS_CLIENT_CONFIG_FILE=str(path))
    env.pop('OS_CPUMIGRATE_SSH_CONFIG', None)
    return env


def test_clouds_yaml_settings_quiet_and_log_file(lab_env, tmp_path):
    ssh_config = lab_env['OS_CPUMIGRATE_SSH_CONFIG']
    env = cloud_env(lab_env, tmp_path, {'ssh_config': ssh_config,
                                        'ssh_timeout': 20})
    # -q: rows on stdout, no progress on stderr
    quiet = run(env, [OPENSTACK, '-q', *CHECK])
    assert '"Verdict"' in quiet.stdout or '"Check"' in quiet.stdout
    assert 'comparing' not in quiet.stderr
    # --log-file: the progress with full timestamps
    log = tmp_path / 'cpumigrate.log'
    loud = run(env, [OPENSTACK, '--log-file', str(log), *CHECK])
    assert re.search(r'^\d\d:\d\d:\d\d comparing ', loud.stderr, re.M)
    assert re.search(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ INFO '
                     r'osc_cpumigrate\.progress .*comparing ',
                     log.read_text(), re.M), log.read_text()[-2000:]


def test_without_the_clouds_yaml_key_the_hosts_are_not_reached(
        lab_env, tmp_path):
    env = cloud_env(lab_env, tmp_path, {'ssh_timeout': 5})
    env['HOME'] = str(tmp_path)          # no ~/.ssh/config to fall back on
    proc = run(env, [OPENSTACK, *CHECK], ok=False)
    assert proc.returncode == 1
    assert 'intel-1' in proc.stderr


def test_invalid_clouds_yaml_value_is_an_error(lab_env, tmp_path):
    env = cloud_env(lab_env, tmp_path, {'ssh_timeout': 'soon'})
    proc = run(env, [OPENSTACK, *CHECK], ok=False)
    assert proc.returncode == 1
    assert 'cpumigrate.ssh_timeout' in proc.stderr
    assert proc.stdout == ''
