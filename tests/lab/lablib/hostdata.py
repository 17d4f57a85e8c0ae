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

"""Where a lab host's data lives, as seen from inside the host.

The host's bin directory (bind-mounted onto /usr/local/sbin in its mount
namespace) holds ``lab-host.json``; it names the host's lab directory, which
holds ``host.json`` (name, CPU, libvirt/QEMU versions, address),
``state.json`` (the guests, written by the lab driver in nova-compute) and,
when `labctl drift` switched one on, ``drift.json``.
"""
import json
import os
import sys


def _read(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def locate(argv0=None):
    """The lab-host.json next to the invoked tool (or $LAB_HOST_DIR)."""
    bindir = os.path.dirname(os.path.abspath(argv0 or sys.argv[0]))
    ref = _read(os.path.join(bindir, 'lab-host.json'))
    if ref is None and os.environ.get('LAB_HOST_DIR'):
        ref = _read(os.path.join(os.environ['LAB_HOST_DIR'], 'lab-host.json'))
    if ref is None:
        sys.stderr.write('error: not on a lab host (no lab-host.json)\n')
        sys.exit(2)
    return ref


def host(ref):
    return _read(os.path.join(ref['host_dir'], 'host.json'), {})


def state(ref):
    return _read(os.path.join(ref['host_dir'], 'state.json'), {}) or {}


def drift(ref):
    """The host-model drift switched on for this host (labctl drift)."""
    return (_read(os.path.join(ref['host_dir'], 'drift.json'), {}) or
            {}).get('drift')


def host_cpu(ref, host_def=None):
    """The host's CPU as libvirt sees it now (drift included)."""
    from lablib import realcpu
    return realcpu.host_cpu(host_def or host(ref), drift(ref))


def versions(host_def):
    """(libvirt, QEMU) versions of the host."""
    from lablib import realcpu
    return (host_def.get('libvirt') or realcpu.DEFAULT_LIBVIRT,
            host_def.get('qemu') or realcpu.DEFAULT_QEMU)
