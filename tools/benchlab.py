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

"""What the lab benchmarks (tools/bench-migrate, tools/bench-fleet) share:
the lab's client environment, booting, the CLI, Nova's own migration
durations and the API request count from the lab's request logs.

The figures are whatever the lab does: a live migration takes the guest's
flavor RAM over the lab's migration network (``labctl up
--migration-bandwidth``); the benchmarks bring the lab up at
:data:`BANDWIDTH` MiB/s with guests of :data:`RAM_MB` MB (Nova's classic
``m1.small``), so that one takes 40 s, as on a real migration network of a
few hundred Mbit/s; the lab's APIs run under one gunicorn worker on a
2-core machine shared with other work.
"""

import atexit
import datetime
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
LABCTL = os.path.join(ROOT, 'tests', 'lab', 'labctl')
STATE = os.path.join(ROOT, 'tests', 'lab', '.state')
LOGS = os.path.join(STATE, 'logs')
BIN = os.path.dirname(sys.executable)
OPENSTACK = os.path.join(BIN, 'openstack')
#: Nova and Placement log every request (oslo's requestlog): "GET /v2.1/...".
#: A request one service makes of another carries the caller's global
#: request ID first (``[req-... req-...``); a client's has none (``[None``).
#: The benchmarks' lab: MiB/s of its migration network, MB of RAM per guest.
BANDWIDTH = 51.2
RAM_MB = 2048
#: The lab's own default (labctl's MIGRATION_BANDWIDTH).
DEFAULT_MIBPS = 1024
REQUEST = re.compile(r'requestlog \[None [^]]*\] (\S+) '
                     r'"(GET|POST|PUT|DELETE|PATCH) ')


def add_lab_arguments(parser):
    """--bandwidth and --ram: how long the lab's live migrations take."""
    parser.add_argument('--bandwidth', type=float, default=BANDWIDTH,
                        help='MiB/s of the lab\'s migration network '
                        '(default: %g)' % BANDWIDTH)
    parser.add_argument('--ram', type=int, default=RAM_MB,
                        help='MB of RAM per guest (default: %d)' % RAM_MB)


def setting(args):
    return ('guests of %d MB over %g MiB/s: %.0f s per live migration'
            % (args.ram, args.bandwidth, args.ram / args.bandwidth))


def lab_env(up_args=(), bandwidth=BANDWIDTH):
    """Bring the lab up with its migration network at ``bandwidth`` MiB/s;
    the lab keeps a bandwidth until changed, so the one it had is given
    back when the benchmark ends (the functional tests expect fast
    migrations)."""
    try:
        with open(os.path.join(STATE, 'migration.json')) as f:
            before = json.load(f).get('bandwidth_mibps')
    except (OSError, ValueError, AttributeError):
        before = None
    subprocess.run([LABCTL, 'up', *up_args, '--migration-bandwidth',
                    str(bandwidth)], check=True, stdout=subprocess.DEVNULL)
    atexit.register(subprocess.run, [
        LABCTL, 'up', '--migration-bandwidth', str(before or DEFAULT_MIBPS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = subprocess.run([LABCTL, 'env'], check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ['PATH'])
    for line in out.splitlines():
        if line.startswith('export '):
            key, _sep, value = line[len('export '):].partition('=')
            env[key] = value.strip("'\"")
    return env


def sh(env, *argv, check=True):
    return subprocess.run(argv, env=env, text=True, check=check,
                          stdin=subprocess.DEVNULL, capture_output=True)


def osc(env, *args):
    out = sh(env, OPENSTACK, *args, '-f', 'json').stdout
    return json.loads(out) if out.strip() else []


def flavor(env, ram_mb):
    """A flavor with ``ram_mb`` of RAM (made once); its name."""
    name = 'bench.%dm' % ram_mb
    if not sh(env, OPENSTACK, 'flavor', 'show', name,
              check=False).returncode:
        return name
    sh(env, OPENSTACK, 'flavor', 'create', '--ram', str(ram_mb), '--vcpus',
       '1', '--disk', '1', name)
    return name


def boot(env, host, count, prefix, ram_mb=RAM_MB):
    """Boot on ``host`` (enabled first: a prepared host is disabled)."""
    sh(env, OPENSTACK, 'compute', 'service', 'set', '--enable', host,
       'nova-compute')
    sh(env, LABCTL, 'boot', '--host', host, '--count', str(count),
       '--name-prefix', prefix, '--flavor', flavor(env, ram_mb))
    return [s['ID'] for s in osc(env, 'server', 'list', '--all-projects',
                                 '--host', host)
            if s['Name'].startswith(prefix)]


def timed(env, *argv):
    start = time.monotonic()
    proc = sh(env, *argv, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit('%s failed' % ' '.join(argv[:4]))
    return time.monotonic() - start


def parse(value):
    when = datetime.datetime.fromisoformat(value.replace('Z', ''))
    return when.replace(tzinfo=None)


def nova_seconds(env, server_ids):
    """The sum of Nova's own durations of the servers' newest completed
    live migrations (migration record updated_at - created_at)."""
    total = 0.0
    for sid in server_ids:
        records = osc(env, 'server', 'migration', 'list', '--server', sid,
                      '--type', 'live-migration', '--status', 'completed')
        newest = max(records, key=lambda m: m['Created At'])
        total += (parse(newest['Updated At'])
                  - parse(newest['Created At'])).total_seconds()
    return total


class Requests:
    """Count the HTTP requests Nova and Placement logged from one client
    address between two points."""

    FILES = ('nova-api.out', 'placement.out')

    def __init__(self):
        self.client = '10.237.%s.1' % (
            os.environ.get('CPUMIGRATE_LAB_SLOT') or '0')
        self.marks = {}

    def mark(self):
        self.marks = {f: os.path.getsize(os.path.join(LOGS, f))
                      for f in self.FILES}

    def count(self):
        found = {}
        for name in self.FILES:
            with open(os.path.join(LOGS, name), errors='replace') as f:
                f.seek(self.marks.get(name, 0))
                found[name] = sum(
                    1 for line in f
                    if (m := REQUEST.search(line)) and m.group(1)
                    == self.client)
        return found
