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

"""Required CPU traits and the features that serve them (cpu.traits)."""

from osc_cpumigrate.cpu import traits


def test_required_and_forbidden_traits_of_extra_specs():
    specs = {'trait:HW_CPU_X86_AVX2': 'required',
             'trait1:HW_CPU_X86_SSE42': 'Required',
             'trait:HW_CPU_X86_AVX512F': 'forbidden',
             'hw:cpu_policy': 'dedicated', 'traitless': 'required'}
    assert traits.required_traits(specs) == {'HW_CPU_X86_AVX2',
                                             'HW_CPU_X86_SSE42'}
    assert traits.forbidden_traits(specs) == {'HW_CPU_X86_AVX512F'}
    assert traits.required_traits({}) == frozenset()


def test_trait_names_map_to_libvirt_features_as_nova_does():
    # Nova's CPU_TRAITS_MAPPING, turned around
    assert traits.TRAIT_FEATURES['HW_CPU_X86_AVX2'] == 'avx2'
    assert traits.TRAIT_FEATURES['HW_CPU_X86_SSE42'] == 'sse4.2'
    assert traits.TRAIT_FEATURES['HW_CPU_X86_CLMUL'] == 'pclmuldq'
    assert traits.TRAIT_FEATURES['HW_CPU_X86_AMD_SVM'] == 'svm'
    assert traits.TRAIT_FEATURES['HW_CPU_X86_SVM'] == 'svm'
    assert traits.served_traits({'svm', 'AVX2'}) == {
        'HW_CPU_X86_SVM', 'HW_CPU_X86_AMD_SVM', 'HW_CPU_X86_AVX2'}


def test_a_models_own_features_serve_traits(cpu_map):
    wanted = {'HW_CPU_X86_AVX2', 'HW_CPU_X86_SSE42', 'COMPUTE_STATUS_X'}
    kvm64 = cpu_map.model('kvm64').features
    haswell = cpu_map.model('Haswell').features
    # a trait that is no CPU feature is not the model's business
    assert traits.unserved(wanted, kvm64) == {'HW_CPU_X86_AVX2',
                                              'HW_CPU_X86_SSE42'}
    assert traits.unserved(wanted, haswell) == frozenset()
    assert 'HW_CPU_X86_AVX2' in traits.served_traits(haswell)
    assert traits.describe({'HW_CPU_X86_AVX2'}) == 'HW_CPU_X86_AVX2 (avx2)'
