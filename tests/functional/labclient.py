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

"""What the functional tests use to talk to the lab as an operator would:
the ``openstack`` CLI of the venv running the tests, as subprocesses."""

import calendar
import contextlib
import json
import os
import subprocess
import sys
import time

_venv_osc = os.path.join(os.path.dirname(sys.executable), 'openstack')
OPENSTACK = os.environ.get('OPENSTACK') or (
    _venv_osc if os.path.exists(_venv_osc) else 'openstack')


def run(env, argv, ok=True, timeout=300, input_text=None):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=timeout, input=input_text,
                          stdin=None if input_text is not None
                          else subprocess.DEVNULL)
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


def ssh(env, host, command, ok=True):
    """``command`` (a shell string) on a lab host as the operator."""
    return run(env, ['ssh', '-F', env['OS_CPUMIGRATE_SSH_CONFIG'], '-o',
                     'BatchMode=yes', host, command], ok=ok)


def wait_fresh_heartbeat(env, host, since, timeout=60):
    """The host's nova-compute is up and has reported after ``since``."""
    conn = sdk(env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for svc in conn.compute.services(binary='nova-compute', host=host):
            ts = svc.updated_at or ''
            t = calendar.timegm(time.strptime(
                ts.split('.')[0], '%Y-%m-%dT%H:%M:%S')) if ts else 0
            if svc.state == 'up' and t > since:
                return
        time.sleep(0.5)
    raise AssertionError('no fresh heartbeat from %s' % host)


def restart_compute(env, host):
    """Restart nova-compute on a host; return once the new process
    heartbeats (it does so only after init_host)."""
    ssh(env, host, 'sudo -n systemctl restart nova-compute')
    # the old process is gone now: a newer heartbeat is the new one's
    wait_fresh_heartbeat(env, host, time.time())


def sdk(env):
    """An openstacksdk connection to the lab cloud of ``env``."""
    from openstack import config as os_config
    from openstack import connection
    cloud = os_config.OpenStackConfig(
        config_files=[env['OS_CLIENT_CONFIG_FILE']]).get_one(
            cloud=env['OS_CLOUD'])
    return connection.Connection(config=cloud)


@contextlib.contextmanager
def skip_cpu_compare_on_dest(env, host):
    """Let ``host`` take host-model guests from a host with the same CPU.

    Nova compares a host-model guest (no ``vcpu_model.model``) by the
    source's *raw* CPU against the destination's host-model, which lists
    features QEMU never gives a guest, so even between two identical hosts
    the pre-check fails (Nova bug 2039803; the lab behaves the same).
    Operators set ``[workarounds] skip_cpu_compare_on_dest`` on the
    destination; tests that need a plain same-vendor live migration do the
    same, and put the original nova.conf back afterwards.
    """
    original = ssh(env, host, 'sudo -n cat /etc/nova/nova.conf').stdout
    ssh(env, host, "sudo -n sh -c \"printf '\\n[workarounds]\\n"
        "skip_cpu_compare_on_dest = True\\n' >> /etc/nova/nova.conf\"")
    restart_compute(env, host)
    try:
        yield
    finally:
        run(env, ['ssh', '-F', env['OS_CPUMIGRATE_SSH_CONFIG'], '-o',
                  'BatchMode=yes', host,
                  'sudo -n tee /etc/nova/nova.conf >/dev/null'],
            input_text=original)
        restart_compute(env, host)
