"""What the functional tests use to talk to the lab as an operator would:
the ``openstack`` CLI of the venv running the tests, as subprocesses."""

import json
import os
import subprocess
import sys

_venv_osc = os.path.join(os.path.dirname(sys.executable), 'openstack')
OPENSTACK = os.environ.get('OPENSTACK') or (
    _venv_osc if os.path.exists(_venv_osc) else 'openstack')


def run(env, argv, ok=True, timeout=300):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if ok and proc.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s\n%s' % (
            ' '.join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


def osc(env, *args, ok=True):
    """``openstack ARGS -f json``, parsed (None for no output)."""
    proc = run(env, [OPENSTACK, *args, '-f', 'json'], ok=ok)
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def host_of(env, sid):
    return osc(env, 'server', 'show', sid)['OS-EXT-SRV-ATTR:host']
