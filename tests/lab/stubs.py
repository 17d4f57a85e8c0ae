#!/usr/bin/env python3
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

"""Tiny Glance and Neutron stand-ins for the lab.

Nova calls the image service on every server create and the network
service even for servers with ``networks='none'``.  Glance serves a fixed
set of images; Neutron answers every list with an empty list.

    stubs.py BIND_ADDRESS GLANCE_PORT NEUTRON_PORT [AUTHTOKEN_JSON]

With AUTHTOKEN_JSON (``{"image": {...}, "network": {...}}``, the options of
keystonemiddleware's auth_token for each) every request but version
discovery needs a Keystone token, as behind the real services' pipelines;
the lab runs this with its venv's python for keystonemiddleware.
"""
import json
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs
from wsgiref import simple_server

CREATED = '2026-01-01T00:00:00Z'


def _image(uuid, name, **props):
    img = {
        'id': uuid, 'name': name, 'status': 'active', 'visibility': 'public',
        'protected': False, 'os_hidden': False,
        'container_format': 'bare', 'disk_format': 'qcow2',
        'size': 21430272, 'virtual_size': 117440512,
        'min_disk': 0, 'min_ram': 0, 'checksum': None,
        'os_hash_algo': None, 'os_hash_value': None,
        'owner': 'admin', 'tags': [], 'created_at': CREATED,
        'updated_at': CREATED, 'self': '/v2/images/' + uuid,
        'file': '/v2/images/%s/file' % uuid, 'schema': '/v2/schemas/image',
    }
    img.update(props)
    return img


IMAGES = [
    _image('c1a7e1e5-0000-4000-8000-000000000001', 'cirros'),
    _image('c1a7e1e5-0000-4000-8000-000000000009', 'rhel9',
           os_distro='rhel', os_version='9'),
    # a guest OS that ignores ACPI (the lab driver reads lab_ignores_acpi);
    # Nova's stop waits os_shutdown_timeout, then cuts the power
    _image('c1a7e1e5-0000-4000-8000-0000000ac001', 'noacpi',
           os_shutdown_timeout='5', lab_ignores_acpi='true'),
]

BASE_PROPERTIES = (
    'id', 'name', 'status', 'visibility', 'protected', 'os_hidden',
    'checksum', 'owner', 'size', 'virtual_size', 'container_format',
    'disk_format', 'created_at', 'updated_at', 'tags', 'min_ram', 'min_disk',
    'os_hash_algo', 'os_hash_value', 'direct_url', 'locations', 'self',
    'file', 'schema')
# no types: warlock validates nothing, Nova only asks what is a base property
SCHEMA = {'name': 'image',
          'properties': {p: {'description': p} for p in BASE_PROPERTIES},
          'additionalProperties': {'type': 'string'}, 'links': []}


def _reply(start_response, code, body):
    data = json.dumps(body).encode()
    reason = {200: 'OK', 300: 'Multiple Choices', 403: 'Forbidden',
              404: 'Not Found'}.get(code, 'Unknown')
    start_response('%d %s' % (code, reason), [
        ('Content-Type', 'application/json'),
        ('Content-Length', str(len(data)))])
    return [data]


def glance(environ, start_response):
    parts = [p for p in environ['PATH_INFO'].split('/') if p]
    query = parse_qs(environ.get('QUERY_STRING', ''))
    code, body = _glance(_base(environ), environ['REQUEST_METHOD'], parts,
                         query)
    return _reply(start_response, code, body)


def neutron(environ, start_response):
    parts = [p for p in environ['PATH_INFO'].split('/') if p]
    if environ['REQUEST_METHOD'] != 'GET':
        code, body = 404, {'error': 'not supported by the lab stand-in'}
    else:
        code, body = _neutron(_base(environ), parts)
    return _reply(start_response, code, body)


def _base(environ):
    return 'http://%s' % environ.get('HTTP_HOST', environ['SERVER_NAME'])


def _glance(base, method, parts, query):
    if method != 'GET':
        return 403, {'error': 'not supported by the lab stand-in'}
    if not parts:
        return 300, {'versions': [{
            'id': 'v2.16', 'status': 'CURRENT',
            'links': [{'rel': 'self', 'href': base + '/v2/'}]}]}
    if parts == ['v2', 'schemas', 'image']:
        return 200, SCHEMA
    if parts[:2] == ['v2', 'images'] and len(parts) == 2:
        imgs = IMAGES
        for key in ('name', 'id', 'status', 'visibility'):
            if key in query:
                imgs = [i for i in imgs if str(i.get(key)) in query[key]]
        if 'marker' in query:
            imgs = []
        return 200, {'images': imgs, 'first': '/v2/images',
                     'schema': '/v2/schemas/images'}
    if parts[:2] == ['v2', 'images'] and len(parts) == 3:
        for img in IMAGES:
            if img['id'] == parts[2]:
                return 200, img
    return 404, {'code': 404, 'title': 'Not Found',
                 'message': 'No image found'}


def _neutron(base, parts):
    if not parts:
        return 200, {'versions': [{
            'id': 'v2.0', 'status': 'CURRENT',
            'links': [{'rel': 'self', 'href': base + '/v2.0/'}]}]}
    if parts[0] == 'v2.0':
        parts = parts[1:]
    if not parts:
        return 200, {'resources': []}
    last = parts[-1]
    if last.endswith('.json'):
        last = last[:-5]
    if len(parts) == 1:
        return 200, {last.replace('-', '_'): []}
    return 404, {'NeutronError': {
        'type': 'NotFound', 'message': 'not found in the lab stand-in',
        'detail': ''}}


def with_auth(app, options):
    """keystonemiddleware's auth_token in front of ``app``; version
    discovery (``/``) stays open as in the real services."""
    from keystonemiddleware import auth_token
    protected = auth_token.AuthProtocol(app, dict(options))

    def dispatch(environ, start_response):
        if environ['PATH_INFO'].strip('/') == '':
            return app(environ, start_response)
        return protected(environ, start_response)
    return dispatch


class Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, fmt, *args):
        # which credentials came along: a user's token, a service's too
        creds = '+'.join(h for h in ('X-Auth-Token', 'X-Service-Token')
                         if self.headers.get(h)) or 'no-token'
        sys.stderr.write('%s %s %s %s\n' % (
            time.strftime('%H:%M:%S'), self.server.kind, creds, fmt % args))


def serve(kind, app, addr, port):
    srv = simple_server.make_server(addr, port, app, server_class=Server,
                                    handler_class=QuietHandler)
    srv.kind = kind
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    addr, gport, nport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    apps = {'image': glance, 'network': neutron}
    if len(sys.argv) > 4:
        with open(sys.argv[4]) as f:
            options = json.load(f)
        apps = {k: with_auth(app, options[k]) for k, app in apps.items()}
    serve('image', apps['image'], addr, gport)
    serve('network', apps['network'], addr, nport)
    threading.Event().wait()


if __name__ == '__main__':
    main()
