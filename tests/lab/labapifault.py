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

"""Cloud-wide nova-api faults of the lab: a stall, or 503s, for N seconds.

A real API fails in front of its paste pipeline: a load balancer answers
503 while the API behind it restarts, or a wedged API (a worker stuck on
a database lock, a saturated thread pool) holds requests and serves them
late.  So this wraps the whole WSGI application, before any auth filter,
and works whatever the pipeline holds.

``labctl fault cloud api-stall|api-503 SECONDS`` writes a flag file
``faults/cloud/<fault>`` in the lab state holding the fault's end (epoch
seconds); every request reads it:

* ``api-stall``: a request that arrives before the end hangs until the
  end, then is served as usual;
* ``api-503``: a request that arrives before the end gets HAProxy's 503
  page (``No server is available to handle this request.``).

``labctl fault cloud clear`` removes the files; stalled requests then go
on at once.
"""
import os
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
STATE = os.environ.get('CPUMIGRATE_LAB_STATE', os.path.join(LAB_DIR, '.state'))
FAULTS = ('api-stall', 'api-503')

#: what HAProxy sends when no backend is up (errors/503.http)
BODY_503 = (b'<html><body><h1>503 Service Unavailable</h1>\n'
            b'No server is available to handle this request.\n'
            b'</body></html>\n')


def flag_path(name, state=STATE):
    return os.path.join(state, 'faults', 'cloud', name)


def until(name, state=STATE):
    """The end (epoch seconds) of fault `name`, or None when it is off."""
    try:
        with open(flag_path(name, state)) as f:
            end = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return end if end > time.time() else None


def switch_on(name, seconds, state=STATE):
    p = flag_path(name, state)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    tmp = p + '.tmp'
    with open(tmp, 'w') as f:
        f.write('%f %s\n' % (time.time() + seconds, time.ctime()))
    os.replace(tmp, p)


def switch_off(state=STATE):
    for name in FAULTS:
        try:
            os.unlink(flag_path(name, state))
        except OSError:
            pass


def wrap(application):
    """The WSGI application behind the lab's API fault switches."""
    def faulty(environ, start_response):
        if until('api-503'):
            start_response('503 Service Unavailable', [
                ('Cache-Control', 'no-cache'), ('Connection', 'close'),
                ('Content-Type', 'text/html')])
            return [BODY_503]
        end = until('api-stall')
        while end:
            time.sleep(min(0.2, max(end - time.time(), 0.01)))
            end = until('api-stall')
        return application(environ, start_response)
    return faulty
