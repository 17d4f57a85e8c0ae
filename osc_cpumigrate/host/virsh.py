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

"""Pure parsing of ``virsh`` output: dumpxml, capabilities, domcapabilities,
version and hypervisor-cpu-compare.

Kept apart from SSH so it is tested on recorded output.
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.types import CompareResult
from osc_cpumigrate.types import GuestCpu

CPU_MAP_DIR = '/usr/share/libvirt/cpu_map'
CPU_MAP_SEPARATOR = '==> cpumigrate-file '


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise HostError('cannot parse %s XML: %s' % (what, exc)) from None


def _features(
    cpu: ET.Element, default_policy: str = 'require'
) -> tuple[tuple[str, str], ...]:
    return tuple((f.get('policy', default_policy), f.get('name', ''))
                 for f in cpu.findall('feature') if f.get('name'))


def parse_guest_cpu(domain_xml: str) -> GuestCpu:
    """``virsh dumpxml`` -> the domain's ``<cpu>``.

    libvirt's default mode is ``custom`` when a ``<model>`` is given; a domain
    without ``<cpu>`` (hypervisor default CPU) has mode and model None.
    """
    root = _xml(domain_xml, 'domain')
    cpu = root if root.tag == 'cpu' else root.find('cpu')
    if cpu is None:
        return GuestCpu(mode=None, model=None)
    model_el = cpu.find('model')
    model = (
        (model_el.text or '').strip() or None if model_el is not None else None
    )
    mode = cpu.get('mode') or ('custom' if model else None)
    vendor_el = cpu.find('vendor')
    vendor = (
        (vendor_el.text or '').strip() or None
        if vendor_el is not None
        else None
    )
    xml = ET.tostring(cpu, encoding='unicode').strip()
    os_type = root.find('os/type')
    return GuestCpu(
        mode=mode, model=model, vendor=vendor, features=_features(cpu),
        xml=xml, machine=os_type.get('machine') if os_type is not None
        else None)


def parse_capabilities(text: str) -> dict:
    """``virsh capabilities`` -> arch, vendor, model, features of host/cpu."""
    root = _xml(text, 'capabilities')
    cpu = root.find('host/cpu')
    if cpu is None:
        raise HostError('virsh capabilities has no host CPU')

    def child(tag):
        el = cpu.find(tag)
        return (el.text or '').strip() if el is not None and el.text else ''

    features = frozenset(
        f.get('name') for f in cpu.findall('feature') if f.get('name')
    )
    machines = set()
    for machine in root.findall('guest/arch/machine'):
        machines.add((machine.text or '').strip())
        machines.add(machine.get('canonical') or '')
    cells = root.find('host/topology/cells')
    return {
        'arch': child('arch'),
        'vendor': child('vendor'),
        'model': child('model'),
        'features': features,
        'machines': frozenset(machines - {''}),
        'numa_cells': int(cells.get('num')) if cells is not None
        and (cells.get('num') or '').isdigit() else None,
    }


def parse_domcapabilities(text: str) -> dict:
    """``virsh domcapabilities`` -> host-model name/features and usable
    models."""
    root = _xml(text, 'domcapabilities')
    result = {'host_model': None, 'host_model_features': frozenset(),
              'host_model_disabled': frozenset(), 'usable_models': frozenset()}
    for mode in root.findall('cpu/mode'):
        name = mode.get('name')
        if name == 'host-model':
            model = mode.find('model')
            if model is not None and model.text:
                result['host_model'] = model.text.strip()
            feats = _features(mode)
            result['host_model_features'] = frozenset(
                n for p, n in feats if p in ('require', 'force'))
            result['host_model_disabled'] = frozenset(
                n for p, n in feats if p in ('disable', 'forbid'))
        elif name == 'custom':
            result['usable_models'] = frozenset(
                (m.text or '').strip() for m in mode.findall('model')
                if m.get('usable') == 'yes' and m.text)
    return result


def parse_version(text: str) -> tuple[str | None, str | None]:
    """``virsh version`` -> (libvirt version, QEMU version)."""
    libvirt = qemu = None
    for line in (text or '').splitlines():
        match = re.match(r'\s*Using library:\s*libvirt\s+(\S+)', line)
        if match:
            libvirt = match[1]
        match = re.match(r'\s*Running hypervisor:\s*QEMU\s+(\S+)', line)
        if match:
            qemu = match[1]
    return libvirt, qemu


_INCOMPATIBLE = 'is incompatible with the CPU provided by hypervisor'
_IDENTICAL = 'is identical to the CPU provided by hypervisor'
_SUPERSET = 'is a superset of CPU described in'
# with --error libvirt names why (src/cpu/cpu_x86.c x86Compute), e.g.
# "the CPU is incompatible with host CPU: Host CPU does not provide
# required features: hle, rtm"
_INCOMPATIBLE_ERROR = 'the CPU is incompatible with host CPU'


def parse_compare(exit_code: int, stdout: str, stderr: str) -> CompareResult:
    """Interpret ``virsh hypervisor-cpu-compare`` (run with ``LC_ALL=C``).

    virsh prints the verdict on stdout; "incompatible" exits 1 like real
    errors do, so the text decides.  With ``--error`` the verdict is
    libvirt's error naming the missing features (kept as the message).
    Anything else is a HostError.
    """
    out = (stdout or '').strip()
    if _INCOMPATIBLE in out:
        return CompareResult(False, 'incompatible', out)
    for line in (stderr or '').splitlines():
        if _INCOMPATIBLE_ERROR in line:
            reason = line[line.index(_INCOMPATIBLE_ERROR):].strip()
            return CompareResult(False, 'incompatible', reason)
    if exit_code == 0 and _IDENTICAL in out:
        return CompareResult(True, 'identical', out)
    if exit_code == 0 and _SUPERSET in out:
        return CompareResult(True, 'superset', out)
    err = ' '.join(
        line.strip() for line in (stderr or out).splitlines() if line.strip()
    )
    raise HostError('virsh hypervisor-cpu-compare failed (exit %s): %s'
                    % (exit_code, err or 'no output'))


def cpu_map_script(directory: str = CPU_MAP_DIR) -> str:
    """sh script printing every cpu_map file as ``separator name`` + base64."""
    return (
        'cd "$1" || exit 3; for f in *; do [ -f "$f" ] || continue; '
        'printf "%s%s\\n" "$2" "$f"; base64 -w 0 < "$f" || exit 4; echo; done'
    )


def parse_cpu_map(text: str) -> dict[str, str]:
    """The output of :func:`cpu_map_script` -> {file name: text}."""
    files: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith(CPU_MAP_SEPARATOR):
            name = line[len(CPU_MAP_SEPARATOR):]
            files[name] = ''
        elif name is not None and line.strip():
            try:
                files[name] = base64.b64decode(
                    line.strip(), validate=True
                ).decode('utf-8', errors='replace')
            except binascii.Error:
                raise HostError(
                    'the libvirt CPU map file %s arrived garbled' % name
                ) from None
            name = None
    return files
