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

"""The project's exceptions, and the one place that turns failures into
``osc_lib`` ``CommandError``.

Workflow code raises :class:`WorkflowError` (a wait that runs out raises its
subclass :class:`Timeout`), the host layer :class:`HostError`, and SDK errors
pass through; the commands wrap ``take_action`` with
:func:`translate_errors`, so every failure reaches the operator as one line
and exit code 1.  The exceptions live here, not beside the code that raises
them, so that any layer can catch them without importing another layer (and
so the command modules, which import this at every ``openstack`` start, never
pull in fabric or the host layer to catch a ``HostError``).  The original
exception stays chained (``from exc``), so ``openstack --debug`` prints its
traceback too.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import signal
from typing import Any
from typing import TypeVar

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
from osc_lib import exceptions as osc_exc

F = TypeVar('F', bound=Callable[..., Any])


class WorkflowError(Exception):
    """A verb cannot go on; the message is one line for the operator."""


class Timeout(WorkflowError):
    """A wait (:mod:`osc_cpumigrate.poll`) passed its deadline."""


class HostError(Exception):
    """A host operation failed; the message is one line for the operator.

    Never carries secrets (nova.conf values of password/secret/token/key
    options are masked before they reach a message).
    """


class PartialFailure(Exception):
    """Some servers (or checks) failed: the verb's results, every row of
    them, go out first, then the verb fails with ``message`` ("N of M
    failed ...", as OSC's ``server delete`` says)."""

    def __init__(self, message: str, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results


class Terminated(KeyboardInterrupt):
    """SIGTERM: raised where the process happens to be, as Python does
    with SIGINT, so the workflow stops the same way for both."""

    exit_status = 143


#: cliff's exit status for SIGINT (KeyboardInterrupt).
SIGINT_EXIT = 130


def interrupted(exc: KeyboardInterrupt, results: list[Any],
                in_flight: str = '') -> KeyboardInterrupt:
    """Attach the rows so far and what the interruption left under way
    to ``exc`` (the innermost caller that knows them wins), for
    :func:`translate_errors` to print."""
    if not hasattr(exc, 'results'):
        exc.results = results              # type: ignore[attr-defined]
        exc.in_flight = in_flight          # type: ignore[attr-defined]
    return exc


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def report_interruption(cmd: Any, parsed_args: Any,
                        exc: KeyboardInterrupt) -> None:
    """The rows so far in the requested format, then, on stderr, what is
    still under way and the command that follows or aborts it."""
    results = getattr(exc, 'results', [])
    if hasattr(cmd, 'present'):
        cmd.produce_output(parsed_args, *cmd.present(parsed_args, results))
    what = 'terminated (SIGTERM)' if isinstance(exc, Terminated) else (
        'interrupted (SIGINT)')
    in_flight = getattr(exc, 'in_flight', '')
    cmd.app.stderr.write('cpumigrate %s%s\n' % (
        what, ': %s' % in_flight if in_flight else ''))
    cmd.app.stderr.flush()


#: What a 401 means in the middle of a run: keystoneauth signs in again
#: with the password when the token expires, so a refusal is the
#: credentials' (or the user's, or the project's) end, not the token's.
AUTH_REFUSED = ('Keystone refused cpumigrate\'s credentials (HTTP 401: a '
                'wrong or changed password, or a disabled user or project), '
                'so no token could be had or renewed: %s')


def auth_message(exc: Exception) -> str:
    """One line for a refused sign-in (``keystoneauth1`` ``Unauthorized``,
    or an SDK HTTP 401)."""
    detail = (getattr(exc, 'details', None) or str(exc)).strip()
    return AUTH_REFUSED % (detail.splitlines()[0] if detail
                           else exc.__class__.__name__)


def describe(exc: BaseException) -> str:
    """One line for any failure of the cloud API (or a workflow error)."""
    if isinstance(exc, ks_exc.Unauthorized):
        return auth_message(exc)
    if isinstance(exc, sdk_exc.HttpException):
        return http_message(exc)
    return one_line(exc)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it
    has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


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
        return auth_message(exc)
    if status:
        return 'HTTP %s: %s' % (status, detail)
    return detail


def translate_errors(func: F) -> F:
    """Decorator for ``take_action``: failures become ``CommandError``."""

    @functools.wraps(func)
    def wrapper(self: Any, parsed_args: Any) -> Any:
        try:
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        except ValueError:                 # not the main thread
            previous = None
        try:
            return func(self, parsed_args)
        except KeyboardInterrupt as exc:
            # SIGINT or SIGTERM: the rows so far, what is under way, and
            # 130 (cliff's answer to KeyboardInterrupt) or 143.
            report_interruption(self, parsed_args, exc)
            if isinstance(exc, Terminated):
                raise SystemExit(Terminated.exit_status) from None
            raise
        except PartialFailure as exc:
            # The rows are the operator's record of what happened: print
            # them before failing, as OSC commands that collect failures do.
            # The command maps them to columns as for a success.
            self.produce_output(parsed_args,
                                *self.present(parsed_args, exc.results))
            raise osc_exc.CommandError(str(exc)) from exc
        except (WorkflowError, HostError) as exc:
            raise osc_exc.CommandError(str(exc)) from exc
        except sdk_exc.HttpException as exc:
            raise osc_exc.CommandError(http_message(exc)) from exc
        except sdk_exc.ResourceTimeout as exc:
            raise osc_exc.CommandError(str(exc)) from exc
        except sdk_exc.SDKException as exc:
            raise osc_exc.CommandError(str(exc).splitlines()[0]) from exc
        except ks_exc.Unauthorized as exc:
            raise osc_exc.CommandError(auth_message(exc)) from exc
        except ks_exc.ClientException as exc:
            # connection failures and the like, after the retries
            raise osc_exc.CommandError('cloud API: %s' % describe(
                exc)) from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]
