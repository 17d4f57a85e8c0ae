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
