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

"""x86-64 micro-architecture levels (x86-64-v1 .. v4) in libvirt feature names.

Distributions now compile for a level above the 2003 baseline (RHEL 9 and
its rebuilds for x86-64-v2, RHEL 10 for v3), and their glibc refuses to start
on a CPU below it ("Fatal glibc error: CPU does not support x86-64-v2").  A
transition CPU is therefore judged first by its level, then by how many of
the hosts' common features it keeps.

The lists are those of the x86-64 psABI, translated to libvirt's names:
SSE3 is ``pni``, LAHF/SAHF is ``lahf_lm``, CMPXCHG16B is ``cx16``, LZCNT is
``abm``.  The OS-controlled bits the psABI also names (OSFXSR, OSXSAVE) are
not CPU model features: a guest kernel sets them when ``fxsr``/``xsave`` are
present, so ``fxsr`` and ``xsave`` stand for them.

QEMU documents the levels of its own models in
``docs/system/cpu-models-x86-abi.csv`` (kvm64/qemu64 baseline only,
Nehalem/Westmere v2, Haswell/EPYC v3).  cpumigrate computes levels from the
libvirt map instead, because that is what libvirt checks; libvirt 9.0's
``Haswell`` lacks ``f16c`` and ``abm`` that QEMU's Haswell has, so it comes
out v2 here (auto adds such features as explicit flags when all hosts have
them, which makes the level independent of that difference).
"""

from __future__ import annotations

from collections.abc import Iterable
import re

#: Features each level adds to the one below (libvirt names).
LEVEL_FEATURES: dict[int, frozenset[str]] = {
    1: frozenset({'lm', 'cmov', 'cx8', 'fpu', 'fxsr', 'mmx', 'syscall',
                  'sse', 'sse2'}),
    2: frozenset({'cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4.1', 'sse4.2',
                  'ssse3'}),
    3: frozenset({'avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm',
                  'movbe', 'xsave'}),
    4: frozenset({'avx512f', 'avx512bw', 'avx512cd', 'avx512dq',
                  'avx512vl'}),
}

MAX_LEVEL = max(LEVEL_FEATURES)

_LEVEL_RE = re.compile(r'^(?:x86[-_]64[-_])?v([0-9]+)$', re.IGNORECASE)


def features_for_level(level: int) -> frozenset[str]:
    """All features a CPU needs to be at ``level`` (cumulative)."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f'x86-64 level must be 0 to {MAX_LEVEL}, '
                         f'not {level}')
    out: set[str] = set()
    for lvl in range(1, level + 1):
        out |= LEVEL_FEATURES[lvl]
    return frozenset(out)


def x86_64_level(features: Iterable[str]) -> int:
    """The highest level whose features (and those of every lower level)
    are all in ``features``.

    1 to 4 for any 64-bit CPU; 0 for one without even the x86-64 baseline
    (a 32-bit model such as ``qemu32``), so that callers never mistake such
    a CPU for a v1 one.
    """
    have = frozenset(features)
    level = 0
    for lvl in range(1, MAX_LEVEL + 1):
        if not LEVEL_FEATURES[lvl] <= have:
            break
        level = lvl
    return level


def missing_for_level(features: Iterable[str], level: int) -> frozenset[str]:
    """Features ``features`` lacks to reach ``level`` (empty when it does)."""
    return features_for_level(level) - frozenset(features)


def level_name(level: int) -> str:
    """``x86-64-v2`` for 2; ``below x86-64`` for 0."""
    return f'x86-64-v{level}' if level >= 1 else 'below x86-64'


def parse_level(text: str) -> int | None:
    """``x86-64-v2`` / ``x86_64_v2`` / ``v2`` -> 2; None if ``text`` does not
    look like a level; ValueError for a level that does not exist (v5)."""
    m = _LEVEL_RE.match(text.strip())
    if not m:
        return None
    level = int(m.group(1))
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f'{text!r}: x86-64 levels are v1 to v{MAX_LEVEL}')
    return level
