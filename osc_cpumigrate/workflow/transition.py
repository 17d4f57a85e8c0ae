"""Which transition CPU to use, and whether a guest can run on it.

``--cpu-model auto`` asks every source and destination host (their libvirt
CPU map, host-model CPU and ``virsh hypervisor-cpu-compare``); an explicit
model is taken as given.
"""

from __future__ import annotations

import logging
from typing import Sequence

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)


def clean_flags(flags: Sequence[str]) -> tuple[str, ...]:
    out = []
    for flag in flags:
        for part in flag.replace(',', ' ').split():
            if part and part not in out:
                out.append(part)
    return tuple(out)


def resolve(ctx: common.Context, source: str, destinations: Sequence[str],
            model: str, flags: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The (model, extra flags) to write into the source's nova.conf."""
    if model != 'auto':
        if not model.strip():
            raise WorkflowError('--cpu-model needs a model name or auto')
        return model.strip(), clean_flags(flags)
    if flags:
        raise WorkflowError('--cpu-flag goes with an explicit --cpu-model; '
                            'auto chooses the flags itself')
    raise WorkflowError('--cpu-model auto is not available yet: name a '
                        'model, e.g. --cpu-model kvm64')


def floor_check(ctx: common.Context):
    return None
