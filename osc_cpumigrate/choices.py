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

"""Option values shared by the commands and the workflow.

A module of plain constants: the command modules import it at ``openstack``
start, so it must stay free of anything costly.
"""

RESTART_METHODS = ('stop-start', 'hard-reboot')
#: pin's and finalize's default: Nova's stop shuts the guest down cleanly
#: (ACPI, within shutdown_timeout / the image's os_shutdown_timeout).
DEFAULT_RESTART_METHOD = 'stop-start'
#: The method that cuts the guest's power (libvirt virDomainDestroy).
POWER_CUT_METHOD = 'hard-reboot'
ON_TIMEOUT = ('abort', 'force-complete')
PROFILES = ('default', 'rhel', 'kolla')
