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

"""Host layer: everything cpumigrate does on a hypervisor, over SSH.

The workflow only uses :mod:`osc_cpumigrate.host.api` (the :class:`Host`
interface and :func:`~osc_cpumigrate.host.api.open_host`); the values a host
returns live in :mod:`osc_cpumigrate.types` and its error, ``HostError``, in
:mod:`osc_cpumigrate.errors`.  Within the package, modules import those two,
never ``api``, so ``api`` -> ``remote`` is the only edge and there is no
cycle.  fabric, paramiko and configupdater are imported inside the functions
that use them.
"""
