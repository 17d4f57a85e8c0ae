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

"""Fixtures for the functional tests that run against the lab (tests/lab)."""
import os
import shlex
import subprocess
import time

import pytest

LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'lab')
LABCTL = os.path.join(LAB_DIR, 'labctl')
#: tools/run-tests starts the lab in the background while the linters and
#: the tests that need no lab run, and names here the file its `labctl up`
#: writes its exit status to when done
LAB_STARTING = 'CPUMIGRATE_LAB_UP_STATUS'


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'lab: needs the lab (tests/lab/labctl up, as root)')


def _parse_env(text):
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('export '):
            key, _sep, value = line[len('export '):].partition('=')
            env[key] = shlex.split(value)[0] if value else ''
    return env


@pytest.fixture(scope='session')
def lab_env(tmp_path_factory):
    """Bring the lab up (idempotent) and yield its client environment.

    A full environment for subprocesses: os.environ plus the output of
    `labctl env` (OS_CLIENT_CONFIG_FILE, OS_CLOUD, OS_CPUMIGRATE_SSH_CONFIG)
    and LABCTL, the path of labctl; OS_CPUMIGRATE_AUDIT_LOG in a
    temporary directory.
    """
    if os.geteuid() != 0:
        pytest.skip('the lab needs root (network namespaces, sshd)')
    wait_background_start(os.environ.get(LAB_STARTING))
    # idempotent: seconds after a background start, whatever it ended with
    # (a failed one fails here again, with its output)
    res = subprocess.run([LABCTL, 'up'], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail('labctl up failed:\n%s%s' % (res.stdout,
                                                 res.stderr[-5000:]))
    # Tests start from a fresh lab, whatever an earlier run left behind.
    res = subprocess.run([LABCTL, 'reset'], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail('labctl reset failed:\n%s%s' % (res.stdout,
                                                    res.stderr[-5000:]))
    out = subprocess.run([LABCTL, 'env'], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    env = dict(os.environ)
    env.update(_parse_env(out))
    env['LABCTL'] = LABCTL
    # the verbs' audit trail goes to the test run, not the user's home
    env.setdefault('OS_CPUMIGRATE_AUDIT_LOG', str(
        tmp_path_factory.mktemp('audit') / 'audit.log'))
    yield env


def wait_background_start(status_file, timeout=1800):
    """Until tools/run-tests' background `labctl up` has ended (two at
    once would race on the lab's state)."""
    if not status_file:
        return
    deadline = time.monotonic() + timeout
    while not os.path.exists(status_file):
        if time.monotonic() > deadline:
            pytest.fail('the background labctl up did not end within %d s'
                        % timeout)
        time.sleep(1)


@pytest.fixture(scope='module', autouse=True)
def fresh_lab(lab_env):
    """Every module starts from a fresh lab (the session fixture resets it
    for the first): the runbook leaves its sources disabled by design, and a
    module that fails half-way leaves servers, faults and transition
    settings behind; neither must decide how the next module goes."""
    yield
    res = subprocess.run([LABCTL, 'reset'], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail('labctl reset failed:\n%s%s' % (res.stdout,
                                                    res.stderr[-5000:]))
