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

"""Lab hosts with real CPUs, as libvirt and QEMU/KVM present them.

A lab host's CPU comes from libvirt's own test data (tests/lab/cputestdata,
copied from the libvirt source's tests/cputestdata): ``-json.xml`` is the
CPU QEMU/KVM offers a guest as host-model (``virsh domcapabilities``),
``-host.xml`` the raw host CPU (``virsh capabilities``, Nova's cpu_info).
A host given by a model name only (``NAME:MODEL``) gets the same shape: the
model plus the family's usual extras as both its host-model and raw CPU.

libvirt compares a CPU with the host-model (compareHypervisorCPU, x86Compute
in src/cpu/cpu_x86.c); :func:`compare` gives the same verdict and the same
error text.  :func:`live_guest_cpu` builds the CPU a running guest has, as
libvirt's live XML shows it after QEMU started (virCPUx86UpdateLive): the
features QEMU turns on or off by itself for a named model are listed.

A *drift* changes a host's host-model the way a microcode update does
(:data:`DRIFTS`); libvirt notices the new microcode and decodes the CPU
again, often to another model of the same family (e.g. ``-noTSX-``).
"""

import os
import xml.etree.ElementTree as ET

from lablib import cpumap

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'cputestdata')
DEFAULT_LIBVIRT = '9.0.0'     # Debian 12
DEFAULT_QEMU = '7.2.0'

#: What QEMU turns on (x2apic, hypervisor) or off (kvm_default_props:
#: monitor, svm) by itself for a named model under KVM.
QEMU_ENABLES = ('x2apic', 'hypervisor')
QEMU_DISABLES = ('monitor', 'svm')

#: Microcode updates: features dropped, features added.  The TSX-disabling
#: updates (TAA, 2019 on) come after the ones that brought IBRS.
DRIFTS = {
    'noTSX': (('hle', 'rtm'), ('spec-ctrl',)),
}

_SUFFIXES = ('-noTSX-IBRS', '-noTSX', '-IBRS', '-IBPB')


class NoCpuData(LookupError):
    pass


def resolve(spec, base=None):
    """The -json.xml file for ``spec``: a path, or a file/CPU name in
    tests/lab/cputestdata (``Xeon-Gold-6148``)."""
    names = [spec, 'x86_64-cpuid-%s-json.xml' % spec,
             'x86_64-cpuid-%s' % spec]
    for d in [base or os.getcwd(), DATA_DIR]:
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path) and path.endswith('.xml'):
                return os.path.abspath(path)
    raise NoCpuData(spec)


def read_cpu(path):
    """A ``<cpu>`` file -> {'model', 'vendor', 'features': [[n, policy]]}."""
    root = ET.parse(path).getroot()
    cpu = root if root.tag == 'cpu' else root.find('.//cpu')
    if cpu is None or not cpu.findtext('model'):
        raise NoCpuData('%s: no <cpu> with a <model>' % path)
    return {'model': cpu.findtext('model').strip(),
            'vendor': (cpu.findtext('vendor') or '').strip() or None,
            'features': [[f.get('name'), f.get('policy') or 'require']
                         for f in cpu.findall('feature') if f.get('name')]}


def load(json_path):
    """host.json's ``cpu`` for a host with the CPU of ``json_path``."""
    data = {'source': os.path.basename(json_path),
            'host_model': read_cpu(json_path), 'host': None}
    host_path = json_path[:-len('-json.xml')] + '-host.xml' \
        if json_path.endswith('-json.xml') else None
    if host_path and os.path.isfile(host_path):
        data['host'] = read_cpu(host_path)
    for cpu in (data['host_model'], data['host']):
        if cpu is not None:
            cpumap.model(cpu['model'])      # UnknownModel if not in cpu_map
    return data


def from_model(name, extras=None):
    """host.json's ``cpu`` for a ``NAME:MODEL`` host: model + extras."""
    host = cpumap.HostCPU(name, extras)
    cpu = {'model': host.model, 'vendor': host.vendor,
           'features': [[f, 'require'] for f in host.extras]}
    return {'source': None, 'host_model': cpu, 'host': dict(cpu)}


def _features(cpu):
    _vendor, feats = cpumap.model(cpu['model'])
    out = set(feats)
    for name, policy in cpu['features']:
        if policy in ('require', 'force'):
            out.add(name)
        elif policy in ('disable', 'forbid'):
            out.discard(name)
    return out


def _family(name):
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def decode(cpu, feats, host=False):
    """Name the CPU with feature set ``feats`` like libvirt's x86Decode,
    within the family of ``cpu['model']``: the richest model of the family
    whose features the CPU has; else the old model with disabled features
    (a host CPU never has disabled features: the richest fitting model of
    the vendor then).  Returns a cpu dict like :func:`read_cpu`."""
    family = _family(cpu['model'])
    vendor, _f = cpumap.model(cpu['model'])

    def richest(same_family):
        best = None
        for name in cpumap.model_names():
            mvendor, mfeats = cpumap.model(name)
            if mvendor != vendor or not mfeats <= feats or (
                    same_family and _family(name) != family):
                continue
            if best is None or len(mfeats) > len(cpumap.model(best)[1]):
                best = name
        return best

    name = richest(True) or (host and richest(False)) or cpu['model']
    _v, mfeats = cpumap.model(name)
    order = [n for n, _p in cpu['features']]
    extra = [n for n in order if n in feats and n not in mfeats]
    extra += sorted(feats - mfeats - set(extra))
    disabled = list(_ordered(mfeats - feats))
    return {'model': name, 'vendor': cpu.get('vendor'),
            'features': [[n, 'require'] for n in extra] +
                        [[n, 'disable'] for n in disabled]}


def _ordered(names):
    order = cpumap.feature_order()
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def apply_drift(cpu, drift, host=False):
    if not drift:
        return cpu
    drop, add = DRIFTS[drift] if drift in DRIFTS else parse_drift(drift)
    feats = _features(cpu)
    known = cpumap.known_features()
    changed = (feats - set(drop)) | {
        f for f in add if not known or f in known}
    if changed == feats:
        return cpu
    return decode(cpu, changed, host)


def parse_drift(text):
    """``-hle,-rtm,+spec-ctrl`` -> ((dropped), (added))."""
    drop, add = [], []
    for item in text.split(','):
        item = item.strip()
        if item.startswith('-'):
            drop.append(item[1:])
        elif item:
            add.append(item.lstrip('+'))
    return tuple(drop), tuple(add)


class RealHostCPU(cpumap.HostCPU):
    """A lab host's CPU from recorded data (see the module docstring).

    ``model``, ``vendor``, ``extras``, ``disabled``, ``features``: the
    host-model (what guests get and what CPUs are compared with);
    ``raw_model``, ``raw_vendor``, ``raw_extras``: the raw host CPU.
    """

    def __init__(self, data, drift=None):
        self.data = data
        self.drift = drift or None
        hm = apply_drift(data['host_model'], drift)
        raw = apply_drift(data.get('host') or data['host_model'], drift,
                          host=True)
        self.model = cpumap.canonical_model(hm['model'])
        mvendor, _mf = cpumap.model(self.model)
        self.vendor = hm.get('vendor') or mvendor
        self.host_model_cpu = hm
        self.extras = [n for n, p in hm['features']
                       if p in ('require', 'force')]
        self.disabled = [n for n, p in hm['features']
                         if p in ('disable', 'forbid')]
        self.features = frozenset(_features(hm))
        self.raw_model = cpumap.canonical_model(raw['model'])
        self.raw_vendor = raw.get('vendor') or self.vendor
        self.raw_extras = [n for n, p in raw['features']
                           if p in ('require', 'force')]

    def cpu_info(self):
        """Like LibvirtDriver._get_cpu_info(): the raw host CPU."""
        info = super().cpu_info()
        info.update(model=self.raw_model, vendor=self.raw_vendor,
                    features=sorted(self.raw_extras))
        return info


def host_cpu(host_def, drift=None):
    """The CPU of a lab host from its host.json (old ones: model/extras)."""
    if host_def.get('cpu'):
        return RealHostCPU(host_def['cpu'], drift)
    data = from_model(host_def['model'], host_def.get('extras'))
    return RealHostCPU(data, drift)


# -- comparing, as libvirt's x86Compute ---------------------------------------

def compare(host, model=None, vendor=None, features=()):
    """(result, message): result identical | superset | incompatible;
    message the text libvirt reports with --error.  Raises
    cpumap.UnknownModel for a model libvirt does not know."""
    if vendor and vendor != host.vendor:
        return 'incompatible', ('host CPU vendor does not match required '
                                'CPU vendor %s' % vendor)
    required, forbidden, listed = set(), set(), set()
    if model:
        _v, mfeats = cpumap.model(model)
        required |= mfeats
    for item in features or ():
        name, policy = (item, 'require') if isinstance(item, str) else (
            item[0], item[1] or 'require')
        listed.add(name)
        if policy in ('require', 'force'):
            required.add(name)
        elif policy in ('disable', 'optional'):
            required.discard(name)
        elif policy == 'forbid':
            required.discard(name)
            forbidden.add(name)
    have = set(host.features)
    if forbidden & have:
        return 'incompatible', 'Host CPU provides forbidden features: %s' % (
            ', '.join(_ordered(forbidden & have)))
    if required - have:
        return 'incompatible', ('Host CPU does not provide required '
                                'features: %s' % ', '.join(
                                    _ordered(required - have)))
    if have - required - listed:
        return 'superset', ''
    return 'identical', ''


# -- the guest's CPU ---------------------------------------------------------

def live_guest_cpu(host, mode, model=None, flags=()):
    """The CPU of a guest started now on ``host``, as stored in the lab's
    state: mode, model, vendor, ``flags`` (configured) and ``features``
    (what the live XML lists)."""
    flags = [list(f) for f in flags]
    if mode == 'custom':
        _v, mfeats = cpumap.model(model)
        named = {n for n, _p in flags}
        implicit = [[n, 'require'] for n in QEMU_ENABLES
                    if n not in mfeats and n not in named]
        implicit += [[n, 'disable'] for n in QEMU_DISABLES
                     if n in mfeats and n not in named]
        order = cpumap.feature_order()
        implicit.sort(key=lambda f: order.get(f[0], len(order)))
        return {'mode': 'custom', 'model': model, 'vendor': None,
                'flags': flags, 'features': flags + implicit}
    # host-model (and host-passthrough, which the lab shows the same way):
    # libvirt expands the host-model at start (x86UpdateHostModel)
    feats = [[n, 'require'] for n in host.extras] + [
        [n, 'disable'] for n in host.disabled]
    return {'mode': mode, 'model': host.model, 'vendor': host.vendor,
            'flags': [], 'features': feats}


# -- machine types ----------------------------------------------------------

_RELEASES = {2: 12, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 2}


def _version(text):
    parts = [int(p) for p in (text or DEFAULT_QEMU).split('.')[:2]]
    return parts[0], (parts[1] if len(parts) > 1 else 0)


def machine_types(qemu=None):
    """[(name, alias or None)] QEMU ``qemu`` offers, newest first, like the
    <machine> list of ``virsh capabilities`` (q35 from 2.4 on)."""
    top = _version(qemu)
    versions = [(ma, mi) for ma in sorted(_RELEASES, reverse=True)
                for mi in range(_RELEASES[ma], -1, -1) if (ma, mi) <= top]
    out = []
    for kind, alias, first in (('pc-q35', 'q35', (2, 4)),
                               ('pc-i440fx', 'pc', (2, 0))):
        names = ['%s-%d.%d' % (kind, ma, mi) for ma, mi in versions
                 if (ma, mi) >= first]
        out.append((names[0], None))
        out.append((alias, names[0]))
        out += [(n, None) for n in names[1:]]
    return out


def canonical_machine(alias='q35', qemu=None):
    for name, canonical in machine_types(qemu):
        if name == alias:
            return canonical or name
    return None
