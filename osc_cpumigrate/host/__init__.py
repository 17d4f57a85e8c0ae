"""Host layer: everything cpumigrate does on a hypervisor, over SSH.

The workflow only uses :mod:`osc_cpumigrate.host.api` (the :class:`Host`
interface and :func:`~osc_cpumigrate.host.api.open_host`); the values a host
returns live in :mod:`osc_cpumigrate.types` and its error, ``HostError``, in
:mod:`osc_cpumigrate.errors`.  Within the package, modules import those two,
never ``api``, so ``api`` -> ``remote`` is the only edge and there is no
cycle.  fabric, paramiko and configupdater are imported inside the functions
that use them.
"""
