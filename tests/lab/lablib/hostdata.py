"""Where a lab host's data lives, as seen from inside the host.

The host's bin directory (bind-mounted onto /usr/local/sbin in its mount
namespace) holds ``lab-host.json``; it names the host's lab directory, which
holds ``host.json`` (name, CPU model, address) and ``state.json`` (the
guests, written by the lab driver in nova-compute).
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
