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

"""How a verb's typed rows become cliff output.

As OSC's compute commands do: the column names are data (they come from the
row's dataclass, :func:`osc_cpumigrate.workflow.rows.columns`) and each row
is one ``utils.get_item_properties`` call.  A CPU cell is a cliff
``FormattableColumn``: short in a table (``SandyBridge-IBRS +29 flags``),
every flag with ``--long``, and an object (mode, model, flags) in ``-f json``
and ``-f yaml``.

Imported when a verb runs (it pulls in the workflow's row types), never at
``openstack`` start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cliff import columns as cliff_columns
from osc_lib import utils

from osc_cpumigrate.workflow import rows


class CpuColumn(cliff_columns.FormattableColumn):
    """A :class:`~osc_cpumigrate.workflow.rows.Cpu` cell, short."""

    def human_readable(self) -> str:
        return self._value.short() if self._value else ''

    def machine_readable(self) -> dict[str, Any] | None:
        return self._value.as_dict() if self._value else None


class LongCpuColumn(CpuColumn):
    """A CPU cell with every flag (``--long``)."""

    def human_readable(self) -> str:
        return self._value.full() if self._value else ''


def formatters(row_type: type, long: bool) -> dict[str, type]:
    kind = LongCpuColumn if long else CpuColumn
    return dict.fromkeys(rows.cpu_columns(row_type), kind)


def listing(row_type: type | str, results: Iterable[Any], *,
            long: bool = False) -> tuple[tuple[str, ...], Any]:
    """(columns, data) of a Lister; ``row_type`` may be named."""
    if isinstance(row_type, str):
        row_type = getattr(rows, row_type)
    names = rows.columns(row_type)
    fmt = formatters(row_type, long)
    return names, [utils.get_item_properties(r, names, formatters=fmt)
                   for r in results]


def show(result: Any, *, long: bool = False) -> tuple[tuple[str, ...],
                                                      tuple[Any, ...]]:
    """(columns, data) of a ShowOne."""
    names = rows.columns(type(result))
    return names, utils.get_item_properties(
        result, names, formatters=formatters(type(result), long))
