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

"""Progress and warnings through Python logging, as OSC plugins do it.

OSC (osc_lib.logs.LogConfigurator) puts one console handler on the root
logger at WARNING (ERROR with ``-q``, INFO with ``-v``, DEBUG with ``-vv``
or ``--debug``) and, with ``--log-file``, a file handler at the same level
with timestamps.  Warnings from cpumigrate's modules (loggers under
``osc_cpumigrate``) reach both like any library's.

Progress is different: a verb that restarts or migrates servers for an hour
must say what it is doing without ``-v``, so progress goes to the logger
``osc_cpumigrate.progress`` at INFO, which does not propagate and has its
own console handler: shown by default and with ``-v``, silenced by ``-q``,
each line stamped with the time.  With ``--log-file`` the file gets the
progress too, and the file handler is lowered to INFO so that the file
captures everything the console shows and more.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
from typing import Any
from typing import TextIO

PROGRESS = 'osc_cpumigrate.progress'
CONSOLE_FORMAT = '%(asctime)s %(message)s'
CONSOLE_DATE_FORMAT = '%H:%M:%S'


class _ConsoleHandler(logging.StreamHandler):
    """The progress console handler (a class of its own so that a second
    command in the same process replaces it rather than adding one)."""


def _verbose_level(app: Any) -> int:
    options = getattr(app, 'options', None)
    level = getattr(options, 'verbose_level', 1)
    if getattr(options, 'debug', False):
        return 3
    return level if isinstance(level, int) else 1


def _file_handler(app: Any) -> logging.Handler | None:
    configurator = getattr(app, 'log_configurator', None)
    handler = getattr(configurator, 'file_logger', None)
    return handler if isinstance(handler, logging.Handler) else None


def setup(app: Any, stderr: TextIO) -> logging.Logger:
    """Attach the progress logger to this run's console and log file."""
    logger = logging.getLogger(PROGRESS)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if _verbose_level(app) > 0:
        console = _ConsoleHandler(stderr)
        console.setFormatter(logging.Formatter(CONSOLE_FORMAT,
                                               CONSOLE_DATE_FORMAT))
        logger.addHandler(console)
    log_file = _file_handler(app)
    if log_file is not None:
        if log_file.level > logging.INFO:
            log_file.setLevel(logging.INFO)
        logger.addHandler(log_file)
    return logger


def progress_callback(app: Any, stderr: TextIO) -> Callable[[str], None]:
    """``ctx.progress``: a callable that logs one progress message."""
    logger = setup(app, stderr)

    def progress(message: str) -> None:
        logger.info('%s', message.rstrip('\n'))

    return progress
