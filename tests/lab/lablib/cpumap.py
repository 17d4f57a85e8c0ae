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

"""The lab's model of x86 CPUs, read from libvirt's CPU map data.

Debian's libvirt packages ship /usr/share/libvirt/cpu_map/x86_*.xml: one
file per named CPU model (its vendor and feature list) plus the feature
catalogue.  The lab builds each hypervisor's CPU from one named model plus
a few host-only extras, and compares CPUs the way libvirt's
compareHypervisorCPU does for the purposes of this project: a CPU is
compatible with a host when the host has its vendor (if it names one) and
every feature it requires.
"""

import functools
import glob
import os
import xml.etree.ElementTree as ET

CPU_MAP_DIR = os.environ.get('LAB_CPU_MAP_DIR', '/usr/share/libvirt/cpu_map')

# Features real hosts of these families expose on top of the named model
# that libvirt reports as their host CPU (as seen in `virsh capabilities`).
HOST_EXTRAS = {
    'Intel': ['ss', 'vmx', 'pdcm', 'hypervisor', 'tsc_adjust', 'clflushopt',
              'umip', 'pku', 'md-clear', 'stibp', 'arch-capabilities',
              'ssbd', 'xsaves', 'ibpb', 'invtsc'],
    'AMD': ['x2apic', 'tsc-deadline', 'hypervisor', 'tsc_adjust', 'spec-ctrl',
            'stibp', 'arch-capabilities', 'ssbd', 'cmp_legacy', 'virt-ssbd',
            'rdctl-no', 'mds-no', 'svm', 'npt', 'nrip-save', 'invtsc'],
}


class UnknownModel(LookupError):
    pass


@functools.cache
def _models():
    """{name: (vendor or None, frozenset(features))} for every x86 model."""
    raw = {}
    for path in sorted(glob.glob(os.path.join(CPU_MAP_DIR, 'x86_*.xml'))):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        for model in root.findall('model'):
            name = model.get('name')
            vendor = model.find('vendor')
            parents = [m.get('name') for m in model.findall('model')]
            feats = [f.get('name') for f in model.findall('feature')]
            raw[name] = (vendor.get('name') if vendor is not None else None,
                         parents, feats)

    def resolve(name, seen=()):
        vendor, parents, feats = raw[name]
        out = set(feats)
        for parent in parents:
            if parent in raw and parent not in seen:
                pvendor, pfeats = resolve(parent, seen + (name,))
                vendor = vendor or pvendor
                out |= pfeats
        return vendor, frozenset(out)

    return {name: resolve(name) for name in raw}


@functools.cache
def known_features():
    path = os.path.join(CPU_MAP_DIR, 'x86_features.xml')
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return frozenset()
    return frozenset(f.get('name') for f in root.findall('feature'))


@functools.cache
def feature_order():
    """{feature: position} in x86_features.xml: libvirt lists features in
    this order (x86FeatureNames), e.g. in compare errors."""
    path = os.path.join(CPU_MAP_DIR, 'x86_features.xml')
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    return {f.get('name'): i for i, f in enumerate(root.findall('feature'))}


def model_names():
    return sorted(_models())


def canonical_model(name):
    """Case-insensitive model lookup, like Nova's cpu model mapping."""
    models = _models()
    if name in models:
        return name
    for known in models:
        if known.lower() == (name or '').lower():
            return known
    raise UnknownModel(name)


def model(name):
    """(vendor, frozenset(features)) of a named model."""
    return _models()[canonical_model(name)]


class HostCPU:
    """A lab hypervisor's CPU: a named model plus host-only extras."""

    arch = 'x86_64'
    sockets, cores, threads = 1, 8, 2

    def __init__(self, model_name, extras=None):
        self.model = canonical_model(model_name)
        self.vendor, model_features = model(self.model)
        if extras is None:
            extras = HOST_EXTRAS.get(self.vendor, [])
        known = known_features()
        self.extras = sorted(f for f in extras
                             if f not in model_features and
                             (not known or f in known))
        self.features = frozenset(model_features) | frozenset(self.extras)

    def cpu_info(self):
        """Like nova.virt.libvirt.driver.LibvirtDriver._get_cpu_info()."""
        return {
            'arch': self.arch,
            'model': self.model,
            'vendor': self.vendor,
            'topology': {'cells': 1, 'sockets': self.sockets,
                         'cores': self.cores, 'threads': self.threads},
            'features': list(self.extras),
        }

    def usable(self, model_name):
        try:
            _vendor, feats = model(model_name)
        except UnknownModel:
            return False
        return feats <= self.features

    def compare(self, model_name=None, vendor=None, features=()):
        """Compare a CPU definition with this host.

        ``features`` is an iterable of (name, policy) pairs; policy one of
        require/force/optional/disable/forbid (libvirt's), a bare name
        means require.  Returns (result, missing) with result one of
        'identical', 'superset', 'incompatible'.
        """
        required = set()
        forbidden = set()
        if model_name:
            try:
                mvendor, mfeats = model(model_name)
            except UnknownModel:
                return 'incompatible', ['unknown CPU model %s' % model_name]
            required |= mfeats
            vendor = vendor or None
        for item in features or ():
            if isinstance(item, str):
                name, policy = item, 'require'
            else:
                name, policy = item[0], (item[1] or 'require')
            if policy in ('require', 'force'):
                required.add(name)
                forbidden.discard(name)
            elif policy == 'disable':
                required.discard(name)
            elif policy == 'forbid':
                required.discard(name)
                forbidden.add(name)
        missing = []
        if vendor and vendor != self.vendor:
            missing.append('vendor %s' % vendor)
        missing += sorted(required - self.features)
        missing += sorted('forbidden %s' % f
                          for f in (forbidden & self.features))
        if missing:
            return 'incompatible', missing
        if required == set(self.features) and (
                not vendor or vendor == self.vendor):
            return 'identical', []
        return 'superset', []
