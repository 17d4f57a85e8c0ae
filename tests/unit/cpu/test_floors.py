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

"""Guest floors from image properties and the operator's metadata key."""

from __future__ import annotations

import pytest

from osc_cpumigrate.cpu import floors
from osc_cpumigrate.cpu.floors import guest_floor
from osc_cpumigrate.cpu.floors import GuestFloor
from osc_cpumigrate.cpu.floors import satisfied


def img(distro=None, version=None, os_type=None):
    props = {'os_distro': distro, 'os_version': version, 'os_type': os_type}
    return {k: v for k, v in props.items() if v is not None}


@pytest.mark.parametrize('props, level', [
    (img('rhel', '9'), 2),
    (img('rhel', '9.4'), 2),
    (img('RHEL', '9.4', 'linux'), 2),
    (img('rocky', '9.3'), 2),
    (img('almalinux', '9'), 2),
    (img('centos', '9-stream'), 2),
    (img('ol', '9.2'), 2),
    (img('rhel', '10.0'), 3),
    (img('centos', '10'), 3),
    (img('rhel9.4'), 2),            # libosinfo id in os_distro
    (img('centos-stream10'), 3),
    (img('sles', '16.0'), 2),
    (img('opensuse', '16.0'), 2),
])
def test_image_floors(props, level):
    floor = guest_floor(props, {})
    assert floor is not None
    assert floor.level == level
    assert floor.features == frozenset()
    assert floor.reason.startswith('image: ')


@pytest.mark.parametrize('props', [
    img('rhel', '8.9'), img('centos', '7'), img('ubuntu', '24.04'),
    img('debian', '12'), img('fedora', '40'), img('sles', '15.5'),
    img('windows', '10'), img('plan9', '4'), img('rhel'), {},
    img('windows'),
])
def test_no_floor(props):
    assert guest_floor(props, {}) is None


@pytest.mark.parametrize('props', [
    img('windows', '11'), img('windows', '11 24H2'),
    img(None, '11', 'windows'),
    img('windows', '2025'), img('win11'), img('win2k25'),
])
def test_windows_floor(props):
    floor = guest_floor(props, {})
    assert floor is not None
    assert floor.features == {'sse4.2', 'popcnt'}
    assert floor.level == 1


def test_metadata_overrides_image():
    floor = guest_floor(img('rhel', '9'),
                        {floors.METADATA_KEY: 'x86-64-v3'})
    assert floor.level == 3
    assert 'metadata cpumigrate:cpu_floor=x86-64-v3' in floor.reason


def test_metadata_none_disables_image_rules():
    assert guest_floor(img('rhel', '10'), {floors.METADATA_KEY: 'none'}) \
        is None


@pytest.mark.parametrize('value, level, feats', [
    ('x86-64-v2', 2, set()),
    ('x86-64-v2,+aes', 2, {'aes'}),
    ('sse4.2,popcnt', 0, {'sse4.2', 'popcnt'}),
    ('sse4_2 sse3 lzcnt', 0, {'sse4.2', 'pni', 'abm'}),
    ('v1, v3', 3, set()),
])
def test_metadata_values(value, level, feats):
    floor = guest_floor({}, {floors.METADATA_KEY: value})
    assert floor.level == level
    assert floor.features == feats


@pytest.mark.parametrize('value', ['x86-64-v9', '-avx', 'sse4.2;rm -rf',
                                   'AVX!'])
def test_bad_metadata_value_is_an_error(value):
    with pytest.raises(floors.InvalidFloor, match='cpumigrate:cpu_floor'):
        guest_floor({}, {floors.METADATA_KEY: value})


def test_other_metadata_is_ignored():
    floor = guest_floor(img('rhel', '9'), {'cpumigrate:other': 'x'})
    assert floor.level == 2


def test_kvm64_does_not_satisfy_rhel9(cpu_map):
    floor = guest_floor(img('rhel', '9'), {})
    ok, missing = satisfied(floor, cpu_map.model('kvm64').features)
    assert not ok
    assert missing == {'lahf_lm', 'popcnt', 'sse4.1', 'sse4.2', 'ssse3'}


def test_westmere_satisfies_rhel9_not_rhel10(cpu_map):
    westmere = cpu_map.model('Westmere').features
    assert satisfied(guest_floor(img('rhel', '9'), {}), westmere) \
        == (True, frozenset())
    ok, missing = satisfied(guest_floor(img('rhel', '10'), {}), westmere)
    assert not ok
    assert {'avx', 'avx2', 'xsave'} <= missing


def test_windows11_on_kvm64(cpu_map):
    floor = guest_floor(img('windows', '11'), {})
    ok, missing = satisfied(floor, cpu_map.model('kvm64').features)
    assert (ok, missing) == (False, {'sse4.2', 'popcnt'})


def test_no_floor_is_always_satisfied():
    assert satisfied(None, []) == (True, frozenset())


def test_describe():
    assert GuestFloor(2, frozenset({'aes'}), 'metadata').describe() \
        == 'x86-64-v2 + aes (metadata)'
    assert GuestFloor(0, frozenset({'popcnt', 'sse4.2'})).describe() \
        == 'popcnt + sse4.2'
