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

"""CPU reasoning without I/O: libvirt's CPU map, x86-64 levels, guest
floors and the choice of a transition CPU.

Pure functions over :mod:`osc_cpumigrate.types` values that the host layer
collected, so they are tested against recorded CPUs (``tests/unit/cpu``)
without a host.  This package imports only ``types`` and ``errors``, never
the host, cloud or workflow layers.
"""
