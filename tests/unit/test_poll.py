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

"""osc_cpumigrate.poll with an injected clock: no test sleeps."""

from __future__ import annotations

import pytest

from osc_cpumigrate import poll
from osc_cpumigrate.errors import Timeout
from osc_cpumigrate.errors import WorkflowError


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_iterate_timeout_yields_elapsed_and_sleeps_interval():
    clock = FakeClock()
    seen = []
    for elapsed in poll.iterate_timeout(60, 'never', interval=2,
                                        clock=clock, sleep=clock.sleep):
        seen.append(elapsed)
        if len(seen) == 4:
            break
    assert seen == [0, 2, 4, 6]
    assert clock.sleeps == [2, 2, 2]


def test_iterate_timeout_raises_after_the_attempt_at_the_deadline():
    clock = FakeClock()
    attempts = []
    with pytest.raises(Timeout, match='^too slow$'):
        for elapsed in poll.iterate_timeout(5, 'too slow', interval=2,
                                            clock=clock, sleep=clock.sleep):
            attempts.append(elapsed)
    # the attempt at 6 s (past the 5 s deadline) still happens
    assert attempts == [0, 2, 4, 6]
    assert isinstance(Timeout('x'), WorkflowError)


def test_iterate_timeout_zero_still_makes_one_attempt():
    clock = FakeClock()
    attempts = []
    with pytest.raises(Timeout):
        for elapsed in poll.iterate_timeout(0, 'now', interval=2,
                                            clock=clock, sleep=clock.sleep):
            attempts.append(elapsed)
    assert attempts == [0]
    assert clock.sleeps == []


def test_iterate_timeout_message_callable_evaluated_on_timeout_only():
    clock = FakeClock()
    calls = []

    def message():
        calls.append(clock.now)
        return 'late'

    gen = poll.iterate_timeout(3, message, interval=1, clock=clock,
                               sleep=clock.sleep)
    for elapsed in gen:
        if elapsed == 2:
            break
    assert calls == []
    with pytest.raises(Timeout, match='late'):
        for _ in poll.iterate_timeout(3, message, interval=1, clock=clock,
                                      sleep=clock.sleep):
            pass
    assert len(calls) == 1


def test_iterate_timeout_none_waits_forever():
    clock = FakeClock()
    count = 0
    for _ in poll.iterate_timeout(None, 'x', interval=100, clock=clock,
                                  sleep=clock.sleep):
        count += 1
        if count == 1000:
            break
    assert clock.now - 1000.0 == 999 * 100


def test_wait_for_returns_the_done_value_and_reports_progress():
    clock = FakeClock()
    values = iter(['BUILD', 'BUILD', 'ACTIVE'])
    progress = []
    result = poll.wait_for(lambda: next(values), done=lambda v: v == 'ACTIVE',
                           timeout=60, interval=5, message='x', clock=clock,
                           sleep=clock.sleep,
                           progress=lambda v, t: progress.append((v, t)))
    assert result == 'ACTIVE'
    assert progress == [('BUILD', 0), ('BUILD', 5)]
    assert clock.sleeps == [5, 5]


def test_wait_for_failed_raises_at_once_with_the_reason():
    clock = FakeClock()
    values = iter(['BUILD', 'ERROR', 'ACTIVE'])
    with pytest.raises(WorkflowError, match='^went to ERROR$') as info:
        poll.wait_for(lambda: next(values), done=lambda v: v == 'ACTIVE',
                      failed=lambda v: 'went to ERROR' if v == 'ERROR'
                      else None,
                      timeout=60, interval=1, message='x', clock=clock,
                      sleep=clock.sleep)
    assert not isinstance(info.value, Timeout)
    assert clock.sleeps == [1]


def test_wait_for_done_wins_over_failed():
    clock = FakeClock()
    result = poll.wait_for(lambda: 'ERROR', done=lambda v: True,
                           failed=lambda v: 'bad', timeout=1, interval=1,
                           message='x', clock=clock, sleep=clock.sleep)
    assert result == 'ERROR'


def test_wait_for_timeout_message_names_the_last_value():
    clock = FakeClock()
    count = iter(range(100))
    with pytest.raises(Timeout, match='^stuck at 3 after 10 s$'):
        poll.wait_for(lambda: next(count), done=lambda v: False,
                      timeout=10, interval=4,
                      message=lambda v: 'stuck at %d after 10 s' % v,
                      clock=clock, sleep=clock.sleep)
    # attempts at 0, 4, 8, 12: the last one is past the deadline
    assert clock.sleeps == [4, 4, 4]


def test_wait_for_plain_message():
    clock = FakeClock()
    with pytest.raises(Timeout, match='^plain$'):
        poll.wait_for(lambda: 1, done=lambda v: False, timeout=0,
                      interval=1, message='plain', clock=clock,
                      sleep=clock.sleep)
