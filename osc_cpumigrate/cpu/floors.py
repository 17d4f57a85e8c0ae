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

"""Guest floors: the lowest CPU a server's operating system still boots on.

Restarting a RHEL 9 guest on ``kvm64`` does not move it, it kills it: glibc
stops at "Fatal glibc error: CPU does not support x86-64-v2".  Before pin
restarts a server on the transition CPU, cpumigrate works out the guest's
floor and refuses to restart a server whose floor the transition CPU does
not meet (``--ignore-guest-floor`` overrides).

Sources, first match wins:

1. server metadata ``cpumigrate:cpu_floor`` (:data:`METADATA_KEY`), set by
   the operator who knows the guest better than any image property::

       openstack server set --property cpumigrate:cpu_floor=x86-64-v2 S
       openstack server set --property cpumigrate:cpu_floor=x86-64-v2,+aes S
       openstack server set --property cpumigrate:cpu_floor=sse4.2,popcnt S
       openstack server set --property cpumigrate:cpu_floor=none S

   A level (``x86-64-v1`` .. ``v4``, or ``v2``), feature names in libvirt or
   QEMU spelling (with or without a leading ``+``), comma or space
   separated; ``none`` says the guest has no floor and disables the image
   rules for this server.
2. the image properties of the server's image (Glance common properties
   ``os_distro``, ``os_version``, ``os_type``), for the releases whose
   floors are documented by their vendors:

   * RHEL and rebuilds (``rhel``, ``centos`` Stream, ``rocky``,
     ``almalinux``, Oracle Linux ``ol``) 9: x86-64-v2; 10 and later:
     x86-64-v3 (AlmaLinux also builds 10 for v2: set the metadata key);
   * SUSE Linux Enterprise (``sles``, ``sled``) and openSUSE Leap
     (``opensuse``) 16 and later: x86-64-v2;
   * Windows 11 (24H2 and later) and Windows Server 2025: SSE4.2 and
     POPCNT (``os_distro=windows`` or ``os_type=windows`` with
     ``os_version`` 11 or 2025; libosinfo ids ``win11``, ``win2k25`` too).

   Fedora, Debian and Ubuntu releases still boot on the x86-64 baseline
   and get no floor.  Unknown distributions get none: cpumigrate does not
   guess, the operator sets the metadata key.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses
import re

from osc_cpumigrate.cpu import levels

#: Server metadata key the operator sets to state a guest's floor.
METADATA_KEY = 'cpumigrate:cpu_floor'

# QEMU/Linux spellings of features a floor names, in libvirt's spelling
# (the CPU map also knows these as aliases; this keeps floors pure).
_ALIASES = {
    'sse3': 'pni', 'pclmulqdq': 'pclmuldq', 'lzcnt': 'abm',
    'sse4_1': 'sse4.1', 'sse4-1': 'sse4.1', 'sse4_2': 'sse4.2',
    'sse4-2': 'sse4.2', 'lahf-lm': 'lahf_lm', 'lahf': 'lahf_lm',
    'cmpxchg16b': 'cx16', 'i64': 'lm', 'xd': 'nx', 'md_clear': 'md-clear',
    'tsc-adjust': 'tsc_adjust', 'aes-ni': 'aes', 'sha': 'sha-ni',
}
_FEATURE_RE = re.compile(r'^[a-z0-9][a-z0-9._-]*$')

_RHEL_FAMILY = {
    'rhel': 'RHEL', 'redhat': 'RHEL', 'centos': 'CentOS Stream',
    'centos-stream': 'CentOS Stream', 'centosstream': 'CentOS Stream',
    'rocky': 'Rocky Linux', 'rockylinux': 'Rocky Linux',
    'almalinux': 'AlmaLinux', 'alma': 'AlmaLinux',
    'ol': 'Oracle Linux', 'oraclelinux': 'Oracle Linux',
    'oracle': 'Oracle Linux',
}
_SUSE = {'sles': 'SUSE Linux Enterprise Server',
         'sled': 'SUSE Linux Enterprise Desktop',
         'opensuse': 'openSUSE Leap', 'opensuse-leap': 'openSUSE Leap'}
_WINDOWS_FEATURES = frozenset({'sse4.2', 'popcnt'})


@dataclasses.dataclass(frozen=True)
class GuestFloor:
    """The least a guest needs: an x86-64 level plus single features."""

    level: int
    features: frozenset[str] = frozenset()
    reason: str = ''

    @property
    def required(self) -> frozenset[str]:
        """Every feature the floor demands (the level's, cumulative, and
        the single ones)."""
        return levels.features_for_level(self.level) | self.features

    def describe(self) -> str:
        """e.g. ``x86-64-v2 (image: RHEL 9)``."""
        parts = []
        if self.level >= 1:
            parts.append(levels.level_name(self.level))
        parts += sorted(self.features)
        text = ' + '.join(parts) if parts else 'none'
        return f'{text} ({self.reason})' if self.reason else text


class InvalidFloor(ValueError):
    """The ``cpumigrate:cpu_floor`` metadata value cannot be parsed."""


def parse_floor(value: str, reason: str = '') -> GuestFloor | None:
    """Parse a floor written as in the metadata key; None for ``none``."""
    text = (value or '').strip().lower()
    if text in ('', 'none', 'no', 'off'):
        return None
    level = 0
    feats: set[str] = set()
    for token in re.split(r'[\s,]+', text):
        if not token:
            continue
        try:
            lvl = levels.parse_level(token)
        except ValueError as exc:
            raise InvalidFloor(f'{METADATA_KEY}={value!r}: {exc}') from None
        if lvl is not None:
            level = max(level, lvl)
            continue
        name = token.lstrip('+')
        if token.startswith('-') or not _FEATURE_RE.match(name):
            raise InvalidFloor(
                f'{METADATA_KEY}={value!r}: {token!r} is neither an x86-64 '
                'level (x86-64-v2) nor a CPU feature name (sse4.2)')
        feats.add(_ALIASES.get(name, name))
    return GuestFloor(level=level, features=frozenset(feats), reason=reason)


def _major(version: str | None) -> int | None:
    m = re.search(r'\d+', version or '')
    return int(m.group()) if m else None


def _split_distro(distro: str, version: str | None) \
        -> tuple[str, str | None]:
    """``rhel9.4`` -> (``rhel``, ``9.4``) when os_version is unset (some
    images carry libosinfo ids in os_distro)."""
    if version:
        return distro, version
    m = re.match(r'^([a-z][a-z-]*?)-?(\d[\d.]*)$', distro)
    if m:
        return m.group(1), m.group(2)
    return distro, version


def _windows_floor(distro: str, os_type: str, version: str) \
        -> GuestFloor | None:
    text = f'{distro} {version}'
    if re.search(r'(?:^|[^0-9])(?:11|2025)(?:[^0-9]|$)', text) or \
            re.search(r'win(?:dows)?[-_ ]?11|win2k25', text):
        which = ('Windows Server 2025' if '2025' in text or '2k25' in text
                 else 'Windows 11')
        return GuestFloor(level=1, features=_WINDOWS_FEATURES,
                          reason=f'image: {which} needs SSE4.2 and POPCNT')
    return None


def image_floor(image_properties: Mapping[str, str]) -> GuestFloor | None:
    """The floor the image properties imply, or None when unknown."""
    props = {k: str(v).strip().lower() for k, v in image_properties.items()
             if v is not None}
    distro = props.get('os_distro', '')
    version = props.get('os_version') or None
    os_type = props.get('os_type', '')
    if distro.startswith('win') or os_type == 'windows':
        return _windows_floor(distro, os_type, version or '')
    distro, version = _split_distro(distro, version)
    major = _major(version)
    if major is None:
        return None
    if distro in _RHEL_FAMILY:
        name = f'{_RHEL_FAMILY[distro]} {major}'
        if major >= 10:
            return GuestFloor(3, reason=f'image: {name} needs x86-64-v3')
        if major == 9:
            return GuestFloor(2, reason=f'image: {name} needs x86-64-v2')
        return None
    if distro in _SUSE and major >= 16:
        return GuestFloor(2, reason=f'image: {_SUSE[distro]} {major} '
                                    'needs x86-64-v2')
    return None


def guest_floor(image_properties: Mapping[str, str],
                server_metadata: Mapping[str, str]) -> GuestFloor | None:
    """The guest's floor: the metadata key if set, else the image's.

    Raises :class:`InvalidFloor` (a ValueError) when the metadata value is
    malformed: a typo must stop the run, not silently drop the protection.
    """
    if METADATA_KEY in server_metadata:
        value = str(server_metadata[METADATA_KEY])
        return parse_floor(value, reason=f'metadata {METADATA_KEY}={value}')
    return image_floor(image_properties)


def satisfied(floor: GuestFloor | None, features: Iterable[str]) \
        -> tuple[bool, frozenset[str]]:
    """Does a CPU with ``features`` meet ``floor``?  Returns (ok, missing
    features); no floor is always met."""
    if floor is None:
        return True, frozenset()
    missing = floor.required - frozenset(features)
    return not missing, missing
