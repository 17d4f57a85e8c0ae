"""check: the read-only pre-flight check (see issue 5)."""

from __future__ import annotations

from typing import Any, Sequence

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common

COLUMNS = ('Check', 'Host', 'Verdict', 'Reason')


def check(ctx: common.Context, source: str, destinations: Sequence[str],
          model: str, flags: Sequence[str],
          ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    raise WorkflowError('check is not implemented yet')
