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

"""libvirt's x86 CPU map, read from the files a host ships.

cpumigrate never bundles a CPU map: it reads ``/usr/share/libvirt/cpu_map``
from the hosts themselves (:meth:`Host.cpu_map`), so the models and feature
names it reasons about are exactly those of the libvirt version the cloud
runs.  The map is small (a few dozen files of a few KiB); parsing it with
:mod:`xml.etree` takes milliseconds.

What is read, and why:

* ``index.xml`` (libvirt >= 4.7) lists the files of each architecture with
  ``<include filename=.../>``; older libvirt ships a single ``cpu_map.xml``
  with everything inline.  Both are handled; only ``<arch name='x86'>`` is
  read, the other architectures are ignored (their files need not even be
  present).
* ``<feature name= migratable=>`` with its ``<alias>`` children: aliases let
  an operator write QEMU's spelling (``sse4_2``, ``sse3``) and still get
  libvirt's (``sse4.2``, ``pni``); ``migratable='no'`` marks features libvirt
  itself refuses to migrate (``invtsc``).
* ``<model name=>`` with an optional ancestor ``<model name='Parent'/>``,
  ``<vendor name=>`` and ``<feature name= [removed='yes']>``: a model's
  features are its ancestor's plus its own, as libvirt's
  ``x86ModelParseAncestor`` computes them; ``removed='yes'`` features are not
  part of the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses
import posixpath
import xml.etree.ElementTree as ET

from osc_cpumigrate.types import HostCpu

X86_ARCHES = ('x86',)

# Leaves and MSRs that only describe the virtualization extensions themselves.
# SVM's feature leaf: npt, nrip-save, vmcb-clean, avic, ...
SVM_LEAF = 0x8000000A
# VMX capability MSRs (IA32_VMX_BASIC .. IA32_VMX_VMFUNC): newer libvirt
# describes the ``vmx-*`` features with them.
VMX_MSRS = range(0x480, 0x492)


class CpuMapError(ValueError):
    """The CPU map files are missing, unparsable or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One x86 feature of the map."""

    name: str
    aliases: tuple[str, ...] = ()
    migratable: bool = True
    cpuid_leaves: tuple[int, ...] = ()   # eax_in of its <cpuid> elements
    msrs: tuple[int, ...] = ()           # index of its <msr> elements

    @property
    def virtualization(self) -> bool:
        """True for SVM/VMX sub-features (they mean nothing without svm/vmx
        and never exist on the other vendor)."""
        return (SVM_LEAF in self.cpuid_leaves
                or any(m in VMX_MSRS for m in self.msrs)
                or self.name.startswith(('vmx-', 'svm-')))


@dataclasses.dataclass(frozen=True)
class Model:
    """A named CPU model, its features fully expanded through ancestors."""

    name: str
    vendor: str | None
    features: frozenset[str]
    parent: str | None = None


@dataclasses.dataclass(frozen=True)
class _RawModel:
    name: str
    parent: str | None
    vendor: str | None
    features: tuple[str, ...]
    removed: tuple[str, ...]


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


class CpuMap:
    """The x86 part of a libvirt CPU map.

    Build it with :meth:`from_files` (what :meth:`Host.cpu_map` returns) or
    :meth:`from_directory`.
    """

    def __init__(self, vendors: Mapping[str, str],
                 features: Iterable[Feature],
                 models: Iterable[_RawModel]) -> None:
        self._vendors = dict(vendors)
        self._features: dict[str, Feature] = {}
        self._aliases: dict[str, str] = {}
        for f in features:
            self._features[f.name] = f
        for f in self._features.values():
            for a in f.aliases:
                self._aliases.setdefault(a, f.name)
        self._raw: dict[str, _RawModel] = {}
        for m in models:
            if m.name in self._raw:
                raise CpuMapError(f'CPU map defines model {m.name!r} twice')
            self._raw[m.name] = m
        self._order = list(self._raw)
        self._resolved: dict[str, Model] = {}

    # -- construction -----------------------------------------------------

    @classmethod
    def from_files(cls, files: Mapping[str, str]) -> CpuMap:
        """Parse a map given as file name -> XML text.

        Keys may be bare names (``index.xml``) or paths; they are matched by
        base name.  Without ``index.xml`` or ``cpu_map.xml`` every
        ``x86_*.xml`` file is read (vendors and features first), which is
        convenient for tests and for partial copies.
        """
        by_name: dict[str, str] = {}
        for key, text in files.items():
            by_name[posixpath.basename(key.replace('\\', '/'))] = text
        parser = _Parser(by_name)
        if 'index.xml' in by_name:
            parser.load_root('index.xml')
        elif 'cpu_map.xml' in by_name:
            parser.load_root('cpu_map.xml')
        else:
            names = sorted(n for n in by_name
                           if n.startswith('x86_') and n.endswith('.xml'))
            if not names:
                raise CpuMapError('no libvirt CPU map: neither index.xml, '
                                  'cpu_map.xml nor x86_*.xml files given')
            first = [n for n in ('x86_vendors.xml', 'x86_features.xml')
                     if n in by_name]
            for name in first + [n for n in names if n not in first]:
                parser.load_file(name)
        if not parser.models:
            raise CpuMapError('the libvirt CPU map defines no x86 CPU model')
        return cls(parser.vendors, parser.features, parser.models)

    @classmethod
    def from_directory(cls, path: str) -> CpuMap:
        """Read a map from a directory such as ``/usr/share/libvirt/cpu_map``
        (for tools and tests; the workflow uses :meth:`from_files`)."""
        import os

        files = {}
        for name in os.listdir(path):
            if name.endswith('.xml'):
                with open(os.path.join(path, name), encoding='utf-8') as fh:
                    files[name] = fh.read()
        return cls.from_files(files)

    # -- queries ----------------------------------------------------------

    def model_names(self) -> list[str]:
        """Model names in map order (the order of ``index.xml``)."""
        return list(self._order)

    def has_model(self, name: str) -> bool:
        return name in self._raw

    def model(self, name: str) -> Model:
        """The model with its features expanded; KeyError if unknown."""
        if name not in self._raw:
            raise KeyError(f'unknown CPU model {name!r}')
        return self._resolve(name, ())

    def feature_names(self) -> frozenset[str]:
        return frozenset(self._features)

    def feature(self, name: str) -> Feature | None:
        """The feature called ``name`` (or one of its aliases), else None."""
        return self._features.get(self.canonical(name))

    def canonical(self, name: str) -> str:
        """libvirt's name of a feature given by name or alias
        (``sse4_2`` -> ``sse4.2``); unknown names come back unchanged."""
        if name in self._features:
            return name
        return self._aliases.get(name, name)

    def canonical_set(self, names: Iterable[str]) -> frozenset[str]:
        return frozenset(self.canonical(n) for n in names)

    def vendor_names(self) -> frozenset[str]:
        return frozenset(self._vendors)

    def non_migratable(self) -> frozenset[str]:
        """Features the map marks ``migratable='no'``."""
        return frozenset(n for n, f in self._features.items()
                         if not f.migratable)

    def virtualization_features(self) -> frozenset[str]:
        """SVM leaf / VMX MSR features (see :attr:`Feature.virtualization`)."""
        return frozenset(n for n, f in self._features.items()
                         if f.virtualization)

    # -- internals --------------------------------------------------------

    def _resolve(self, name: str, seen: tuple[str, ...]) -> Model:
        done = self._resolved.get(name)
        if done is not None:
            return done
        if name in seen:
            raise CpuMapError('CPU model ancestry loops: '
                              + ' -> '.join(seen + (name,)))
        raw = self._raw.get(name)
        if raw is None:
            raise CpuMapError(f'CPU model {seen[-1]!r} has unknown ancestor '
                              f'{name!r}')
        features: set[str] = set()
        vendor = None
        if raw.parent:
            parent = self._resolve(raw.parent, seen + (name,))
            features |= parent.features
            vendor = parent.vendor
        features |= {self.canonical(f) for f in raw.features}
        if raw.vendor:
            vendor = raw.vendor
        model = Model(name=name, vendor=vendor, features=frozenset(features),
                      parent=raw.parent)
        self._resolved[name] = model
        return model


class _Parser:
    """Collects vendors, features and models from the x86 parts."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = files
        self.vendors: dict[str, str] = {}
        self.features: list[Feature] = []
        self.models: list[_RawModel] = []
        self._loaded: set[str] = set()

    def _parse(self, name: str) -> ET.Element:
        try:
            text = self.files[name]
        except KeyError:
            raise CpuMapError(f'libvirt CPU map file {name} is missing') \
                from None
        try:
            return ET.fromstring(text)
        except ET.ParseError as exc:
            raise CpuMapError(f'libvirt CPU map file {name}: {exc}') from None

    def load_root(self, name: str) -> None:
        root = self._parse(name)
        for arch in root.iter('arch'):
            if arch.get('name') in X86_ARCHES:
                self._load_children(arch, name)

    def load_file(self, name: str) -> None:
        if name in self._loaded:
            return
        self._loaded.add(name)
        self._load_children(self._parse(name), name)

    def _load_children(self, parent: ET.Element, source: str) -> None:
        for el in parent:
            if el.tag == 'include':
                filename = el.get('filename')
                if not filename:
                    raise CpuMapError(f'{source}: <include> without filename')
                self.load_file(posixpath.basename(filename))
            elif el.tag == 'vendor':
                self.vendors[el.get('name', '')] = el.get('string', '')
            elif el.tag == 'feature':
                self.features.append(self._feature(el, source))
            elif el.tag == 'model':
                self.models.append(self._model(el, source))
            elif el.tag in ('cpus', 'group'):
                self._load_children(el, source)

    @staticmethod
    def _feature(el: ET.Element, source: str) -> Feature:
        name = el.get('name')
        if not name:
            raise CpuMapError(f'{source}: <feature> without name')
        leaves = tuple(v for v in (_int(c.get('eax_in'))
                                   for c in el.findall('cpuid'))
                       if v is not None)
        msrs = tuple(v for v in (_int(m.get('index'))
                                 for m in el.findall('msr'))
                     if v is not None)
        return Feature(
            name=name,
            aliases=tuple(a.get('name', '') for a in el.findall('alias')
                          if a.get('name')),
            migratable=el.get('migratable', 'yes') != 'no',
            cpuid_leaves=leaves,
            msrs=msrs,
        )

    @staticmethod
    def _model(el: ET.Element, source: str) -> _RawModel:
        name = el.get('name')
        if not name:
            raise CpuMapError(f'{source}: <model> without name')
        parent_el = el.find('model')
        vendor_el = el.find('vendor')
        features, removed = [], []
        for f in el.findall('feature'):
            fname = f.get('name')
            if not fname:
                raise CpuMapError(f'{source}: model {name}: <feature> '
                                  'without name')
            (removed if f.get('removed') == 'yes' else features).append(fname)
        return _RawModel(
            name=name,
            parent=parent_el.get('name') if parent_el is not None else None,
            vendor=vendor_el.get('name') if vendor_el is not None else None,
            features=tuple(features),
            removed=tuple(removed),
        )


def host_features(cpu_map: CpuMap, host: HostCpu) -> frozenset[str]:
    """The features a guest can get on ``host``, in libvirt names.

    That is the hypervisor's host-model CPU (``virsh domcapabilities``): its
    model's features, plus the ``require`` features listed beyond it, minus
    the ``disable`` ones.  It is what QEMU/KVM can actually give a guest, so
    it is the right thing to intersect (the bare ``virsh capabilities`` CPU
    lists host-only bits such as ``vmx`` sub-features or ``monitor`` and
    misses what KVM emulates, like ``x2apic`` or ``tsc-deadline``).  When a
    host reports no host-model CPU (old libvirt), the capabilities model
    plus its features is the fallback.

    Raises :class:`CpuMapError` when the model is not in ``cpu_map`` (the
    map comes from a libvirt older than the host's).
    """
    if host.host_model:
        name, extra = host.host_model, host.host_model_features
        disabled = cpu_map.canonical_set(host.host_model_disabled)
    else:
        name, extra, disabled = host.model, host.features, frozenset()
    if not cpu_map.has_model(name):
        raise CpuMapError(
            f'host CPU model {name!r} is not in the libvirt CPU map in use '
            '(the map is from an older libvirt than this host)')
    base = cpu_map.model(name).features
    return (base | cpu_map.canonical_set(extra)) - disabled
