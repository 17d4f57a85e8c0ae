"""The one place that turns failures into ``osc_lib`` ``CommandError``.

Workflow code raises :class:`WorkflowError` (or lets SDK and host errors
through); the commands wrap ``take_action`` with :func:`translate_errors`, so
every failure reaches the operator as one line and exit code 1.  The
original exception stays chained (``from exc``), so ``openstack --debug``
prints its traceback too.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
from osc_lib import exceptions as osc_exc


F = TypeVar('F', bound=Callable[..., Any])


class WorkflowError(Exception):
    """A verb cannot go on; the message is one line for the operator."""


class PartialFailure(Exception):
    """Some rows failed: print every row, then fail with ``message``."""

    def __init__(self, message: str, columns: tuple[str, ...],
                 rows: list[tuple[Any, ...]]) -> None:
        super().__init__(message)
        self.columns = columns
        self.rows = rows


def http_message(exc: sdk_exc.HttpException) -> str:
    """One line from an SDK HTTP error, naming what the operator must fix."""
    status = getattr(exc, 'status_code', None)
    detail = (getattr(exc, 'details', None) or str(exc)).strip()
    detail = detail.splitlines()[0] if detail else exc.__class__.__name__
    if status == 403:
        return ('the cloud refused the request (HTTP 403): cpumigrate needs '
                'an admin token (compute services, all projects\' servers and '
                'migrations are admin APIs): %s' % detail)
    if status == 401:
        return 'authentication failed (HTTP 401): %s' % detail
    if status:
        return 'HTTP %s: %s' % (status, detail)
    return detail


def translate_errors(func: F) -> F:
    """Decorator for ``take_action``: failures become ``CommandError``."""

    @functools.wraps(func)
    def wrapper(self: Any, parsed_args: Any) -> Any:
        try:
            return func(self, parsed_args)
        except PartialFailure as exc:
            # The rows are the operator's record of what happened: print
            # them before failing, as OSC commands that collect failures do.
            self.produce_output(parsed_args, exc.columns, exc.rows)
            raise osc_exc.CommandError(str(exc)) from exc
        except WorkflowError as exc:
            raise osc_exc.CommandError(str(exc)) from exc
        except sdk_exc.HttpException as exc:
            raise osc_exc.CommandError(http_message(exc)) from exc
        except sdk_exc.ResourceTimeout as exc:
            raise osc_exc.CommandError(str(exc)) from exc
        except sdk_exc.SDKException as exc:
            raise osc_exc.CommandError(str(exc).splitlines()[0]) from exc
        except ks_exc.ClientException as exc:
            # connection failures and the like, outside any retry
            raise osc_exc.CommandError('cloud API: %s' % (
                str(exc).splitlines()[0] if str(exc) else exc)) from exc
        except Exception as exc:
            from osc_cpumigrate.host.api import HostError  # lazy: start-up

            if not isinstance(exc, HostError):
                raise
            raise osc_exc.CommandError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]
