"""CPU reasoning without I/O: libvirt's CPU map, x86-64 levels, guest
floors and the choice of a transition CPU.

Pure functions over :mod:`osc_cpumigrate.types` values that the host layer
collected, so they are tested against recorded CPUs (``tests/unit/cpu``)
without a host.  This package imports only ``types`` and ``errors``, never
the host, cloud or workflow layers.
"""
