"""Fixtures for the functional tests that run against the lab (tests/lab)."""
import os
import shlex
import subprocess

import pytest

LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'lab')
LABCTL = os.path.join(LAB_DIR, 'labctl')


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
def lab_env():
    """Bring the lab up (idempotent) and yield its client environment.

    A full environment for subprocesses: os.environ plus the output of
    `labctl env` (OS_CLIENT_CONFIG_FILE, OS_CLOUD, OS_CPUMIGRATE_SSH_CONFIG)
    and LABCTL, the path of labctl.
    """
    if os.geteuid() != 0:
        pytest.skip('the lab needs root (network namespaces, sshd)')
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
    # The lab's clouds use admin_token auth (no Keystone to ask who the
    # token's user is); its nova-api records the token 'admin:admin' as
    # user 'admin' in instance actions.
    env.setdefault('OS_CPUMIGRATE_USER_ID', 'admin')
    yield env
