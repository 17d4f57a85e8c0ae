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

"""nova-compute as a service of a lab host (used by the lab's systemctl).

Runs in the host's network and mount namespaces, so the started process
reads the host's own /etc/nova/nova.conf.  The pid and the last start time
live in the host's lab directory.
"""
import os
import signal
import subprocess
import time

UNIT = 'nova-compute'


def _path(ref, suffix):
    return os.path.join(ref['host_dir'], UNIT + suffix)


def pid(ref):
    try:
        with open(_path(ref, '.pid')) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def alive(p):
    if not p:
        return False
    try:
        with open('/proc/%d/stat' % p) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ('Z', 'X')


def started_at(ref):
    try:
        with open(_path(ref, '.started')) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None


def state(ref):
    """'active', 'inactive' or 'failed' like systemd's ActiveState."""
    if alive(pid(ref)):
        return 'active'
    if os.path.exists(_path(ref, '.stopped')) or pid(ref) is None:
        return 'inactive'
    return 'failed'


def stop(ref, timeout=10.0):
    p = pid(ref)
    with open(_path(ref, '.stopped'), 'w'):
        pass
    if not alive(p):
        return
    os.kill(p, signal.SIGTERM)
    # as systemd does, so that a stopped (hung) process gets the SIGTERM
    os.kill(p, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while alive(p) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(p):
        os.kill(p, signal.SIGKILL)
        while alive(p):
            time.sleep(0.05)


def start(ref, wait=1.5):
    """Start nova-compute; False if it exited at once (like Type=notify)."""
    if alive(pid(ref)):
        return True
    env = {
        'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'LANG': 'C.UTF-8', 'TZ': 'UTC',
        'LAB_HOST': ref['host'], 'LAB_HOST_DIR': ref['host_dir'],
        'LAB_STATE_DIR': ref['state_dir'], 'PYTHONPATH': ref['lab_dir'],
        'OS_NOVA_DISABLE_EVENTLET_PATCHING': '1',
    }
    cmd = [os.path.join(ref['venv'], 'bin', 'python'),
           os.path.join(ref['lab_dir'], 'launcher.py'), 'compute',
           '--config-file', '/etc/nova/nova.conf',
           '--config-file', os.path.join(ref['host_dir'], 'nova-lab.conf'),
           '--log-file', os.path.join(ref['host_dir'], 'nova-compute.log')]
    out = open(_path(ref, '.out'), 'ab')
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, env=env, cwd='/',
                            start_new_session=True, close_fds=True)
    now = time.time()
    with open(_path(ref, '.pid'), 'w') as f:
        f.write('%d\n' % proc.pid)
    with open(_path(ref, '.started'), 'w') as f:
        f.write('%f\n' % now)
    try:
        os.unlink(_path(ref, '.stopped'))
    except OSError:
        pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return True
