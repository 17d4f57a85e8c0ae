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

"""x86-64 levels of libvirt's models, checked against QEMU's ABI table."""

from __future__ import annotations

import pytest

from osc_cpumigrate.cpu import levels


@pytest.mark.parametrize('model, level', [
    ('kvm64', 1), ('qemu64', 1),            # QEMU: baseline only
    ('Nehalem', 2), ('Westmere', 2),        # QEMU: v2
    ('SandyBridge', 2), ('IvyBridge', 2),
    ('EPYC', 3), ('EPYC-IBPB', 3), ('EPYC-Rome', 3),     # QEMU: v3
    ('Skylake-Client', 3), ('Skylake-Client-IBRS', 3),
    ('Skylake-Server', 4), ('Skylake-Server-IBRS', 4),
    ('Cascadelake-Server', 4),
    ('qemu32', 0), ('486', 0),               # no long mode at all
])
def test_model_levels(cpu_map, model, level):
    assert levels.x86_64_level(cpu_map.model(model).features) == level


@pytest.mark.parametrize('model', ['Haswell', 'Haswell-noTSX',
                                   'Broadwell', 'Broadwell-IBRS'])
def test_haswell_in_libvirt_9_map_lacks_f16c_and_abm(cpu_map, model):
    # QEMU's Haswell is v3; libvirt 9.0's map of it omits f16c and abm
    # (LZCNT), so by what libvirt checks it is v2.  Auto adds such common
    # features as flags, so its level does not depend on this.
    feats = cpu_map.model(model).features
    assert levels.x86_64_level(feats) == 2
    assert levels.missing_for_level(feats, 3) == {'f16c', 'abm'}


def test_missing_for_level(cpu_map):
    kvm64 = cpu_map.model('kvm64').features
    assert levels.missing_for_level(kvm64, 2) == {
        'lahf_lm', 'popcnt', 'sse4.1', 'sse4.2', 'ssse3'}
    assert levels.missing_for_level(kvm64, 1) == frozenset()
    assert levels.missing_for_level(
        cpu_map.model('Skylake-Server').features, 4) == frozenset()


def test_features_for_level_is_cumulative():
    assert levels.features_for_level(0) == frozenset()
    assert levels.features_for_level(2) == (levels.LEVEL_FEATURES[1]
                                            | levels.LEVEL_FEATURES[2])
    assert 'sse2' in levels.features_for_level(4)
    with pytest.raises(ValueError):
        levels.features_for_level(5)


def test_all_level_features_exist_in_the_map(cpu_map):
    assert levels.features_for_level(4) <= cpu_map.feature_names()


@pytest.mark.parametrize('text, level', [
    ('x86-64-v2', 2), ('X86_64_V3', 3), ('v4', 4), (' x86-64-v1 ', 1),
    ('sse4.2', None), ('x86-64', None),
])
def test_parse_level(text, level):
    assert levels.parse_level(text) == level


def test_parse_level_out_of_range():
    with pytest.raises(ValueError, match='v1 to v4'):
        levels.parse_level('x86-64-v5')


def test_level_name():
    assert levels.level_name(2) == 'x86-64-v2'
    assert levels.level_name(0) == 'below x86-64'
