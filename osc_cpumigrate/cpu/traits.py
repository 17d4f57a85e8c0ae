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

"""Required CPU traits, and which CPU features serve them.

A flavor can require CPU traits (``trait:HW_CPU_X86_AVX2=required``).  In
``[libvirt] cpu_mode = custom`` Nova gives such a server the first of
``cpu_models`` whose OWN features (libvirt's expanded model, without
``cpu_model_extra_flags``) include every CPU feature those traits name
(``_match_cpu_model_by_flags``), else it raises ``InvalidCPUInfo: No CPU
model match traits`` after it destroyed the domain: the server ends in
ERROR.  Nova builds that request from the flavor alone; traits the image
requires only steer scheduling (Placement: the destination must have them).

:data:`TRAIT_FEATURES` is Nova's ``CPU_TRAITS_MAPPING``
(``nova/virt/libvirt/utils.py``) turned around: trait -> libvirt feature
name.  Traits outside it are no CPU feature and are never checked against
a model.  No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import re

#: libvirt feature -> os-traits name(s), as Nova 34's CPU_TRAITS_MAPPING.
_FEATURE_TRAITS: dict[str, tuple[str, ...]] = {
    '3dnow': ('HW_CPU_X86_3DNOW',), 'abm': ('HW_CPU_X86_ABM',),
    'aes': ('HW_CPU_X86_AESNI',), 'amx-bf16': ('HW_CPU_X86_AMXBF16',),
    'amx-int8': ('HW_CPU_X86_AMXINT8',),
    'amx-tile': ('HW_CPU_X86_AMXTILE',), 'avx': ('HW_CPU_X86_AVX',),
    'avx2': ('HW_CPU_X86_AVX2',), 'avx512bw': ('HW_CPU_X86_AVX512BW',),
    'avx512cd': ('HW_CPU_X86_AVX512CD',),
    'avx512dq': ('HW_CPU_X86_AVX512DQ',),
    'avx512er': ('HW_CPU_X86_AVX512ER',),
    'avx512f': ('HW_CPU_X86_AVX512F',),
    'avx512pf': ('HW_CPU_X86_AVX512PF',),
    'avx512vl': ('HW_CPU_X86_AVX512VL',),
    'avx512vnni': ('HW_CPU_X86_AVX512VNNI',),
    'avx512vbmi': ('HW_CPU_X86_AVX512VBMI',),
    'avx512ifma': ('HW_CPU_X86_AVX512IFMA',),
    'avx512vbmi2': ('HW_CPU_X86_AVX512VBMI2',),
    'avx512bitalg': ('HW_CPU_X86_AVX512BITALG',),
    'vaes': ('HW_CPU_X86_AVX512VAES',), 'gfni': ('HW_CPU_X86_AVX512GFNI',),
    'vpclmulqdq': ('HW_CPU_X86_AVX512VPCLMULQDQ',),
    'avx512-vpopcntdq': ('HW_CPU_X86_AVX512VPOPCNTDQ',),
    'bmi1': ('HW_CPU_X86_BMI',), 'bmi2': ('HW_CPU_X86_BMI2',),
    'pclmuldq': ('HW_CPU_X86_CLMUL',), 'f16c': ('HW_CPU_X86_F16C',),
    'fma': ('HW_CPU_X86_FMA3',), 'fma4': ('HW_CPU_X86_FMA4',),
    'mmx': ('HW_CPU_X86_MMX',), 'mpx': ('HW_CPU_X86_MPX',),
    'sha-ni': ('HW_CPU_X86_SHA',), 'sse': ('HW_CPU_X86_SSE',),
    'sse2': ('HW_CPU_X86_SSE2',), 'sse3': ('HW_CPU_X86_SSE3',),
    'sse4.1': ('HW_CPU_X86_SSE41',), 'sse4.2': ('HW_CPU_X86_SSE42',),
    'sse4a': ('HW_CPU_X86_SSE4A',), 'ssse3': ('HW_CPU_X86_SSSE3',),
    'svm': ('HW_CPU_X86_SVM', 'HW_CPU_X86_AMD_SVM'),
    'tbm': ('HW_CPU_X86_TBM',),
    'vmx': ('HW_CPU_X86_VMX', 'HW_CPU_X86_INTEL_VMX'),
    'xop': ('HW_CPU_X86_XOP',),
}

#: os-traits CPU trait -> the libvirt feature that serves it.
TRAIT_FEATURES: dict[str, str] = {
    trait: feature for feature, traits in _FEATURE_TRAITS.items()
    for trait in traits}

# trait:NAME, and granular groups trait1:NAME / trait_group:NAME
_TRAIT_KEY = re.compile(r'^trait[^:]*:(.+)$')


def _traits(specs: Mapping[str, object], value: str) -> frozenset[str]:
    found = set()
    for key, wanted in (specs or {}).items():
        match = _TRAIT_KEY.match(str(key))
        if match and str(wanted).strip().lower() == value:
            found.add(match[1].strip())
    return frozenset(found)


def required_traits(specs: Mapping[str, object]) -> frozenset[str]:
    """Traits flavor extra specs (or image properties) require:
    ``trait:NAME=required`` and granular ``traitN:NAME=required``."""
    return _traits(specs, 'required')


def forbidden_traits(specs: Mapping[str, object]) -> frozenset[str]:
    """Traits they forbid: ``trait:NAME=forbidden``."""
    return _traits(specs, 'forbidden')


def served_traits(features: Iterable[str]) -> frozenset[str]:
    """The CPU traits a set of libvirt features serves.

    Pass a model's OWN features (``TransitionCpu.model_features``, or
    ``CpuMap.model(name).features``), never its extra flags: that is what
    Nova matches a flavor's required traits against in custom mode.
    Feature names are compared case-insensitively (libvirt's are lower
    case; Nova lower-cases the configured flags)."""
    names = {f.lower() for f in features}
    return frozenset(t for t, f in TRAIT_FEATURES.items() if f in names)


def unserved(traits: Iterable[str], features: Iterable[str]) \
        -> frozenset[str]:
    """The CPU traits among ``traits`` that ``features`` do not serve
    (traits that name no CPU feature are not Nova's concern here)."""
    served = served_traits(features)
    return frozenset(t for t in traits
                     if t in TRAIT_FEATURES and t not in served)


def describe(traits: Iterable[str]) -> str:
    """``HW_CPU_X86_AVX2 (avx2), ...`` for a message."""
    return ', '.join('%s (%s)' % (t, TRAIT_FEATURES.get(t, '?'))
                     for t in sorted(traits))
