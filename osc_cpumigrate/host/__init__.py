"""Host layer: everything cpumigrate does on a hypervisor, over SSH.

The workflow only uses :mod:`osc_cpumigrate.host.api` (the interface and its
value types) and :func:`osc_cpumigrate.host.api.open_host`.  fabric, paramiko
and configupdater are imported inside the functions that use them.
"""
