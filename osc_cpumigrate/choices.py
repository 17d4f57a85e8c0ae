"""Option values shared by the commands and the workflow.

A module of plain constants: the command modules import it at ``openstack``
start, so it must stay free of anything costly.
"""

RESTART_METHODS = ('hard-reboot', 'stop-start')
ON_TIMEOUT = ('abort', 'force-complete')
PROFILES = ('default', 'rhel', 'kolla')
