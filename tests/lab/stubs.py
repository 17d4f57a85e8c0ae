#!/usr/bin/env python3
"""Tiny Glance and Neutron stand-ins for the lab (standard library only).

Nova calls the image service on every server create and the network
service even for servers with ``networks='none'``.  Glance serves a fixed
set of images; Neutron answers every list with an empty list.

    stubs.py BIND_ADDRESS GLANCE_PORT NEUTRON_PORT [KEYSTONE_PORT]

The Keystone stand-in only answers version discovery (the CLI checks the
identity API version before some compute commands).
"""
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
import json
import sys
import threading
from urllib.parse import parse_qs
from urllib.parse import urlparse

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    kind = None

    def log_message(self, fmt, *args):
        sys.stderr.write('%s %s\n' % (self.kind, fmt % args))

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        if n:
            self.rfile.read(n)

    def do_GET(self):
        url = urlparse(self.path)
        parts = [p for p in url.path.split('/') if p]
        query = parse_qs(url.query)
        if self.kind == 'image':
            return self._glance(parts, query)
        if self.kind == 'identity':
            return self._keystone(parts)
        return self._neutron(parts, query)

    def _keystone(self, parts):
        # version discovery only: clients check the identity API version
        base = 'http://%s:%s' % self.server.server_address[:2]
        v3 = {'id': 'v3.14', 'status': 'stable', 'updated':
              '2020-04-07T00:00:00Z',
              'links': [{'rel': 'self', 'href': base + '/v3/'}],
              'media-types': [{'base': 'application/json', 'type':
                               'application/vnd.openstack.identity-v3+json'}]}
        if not parts:
            return self._send(300, {'versions': {'values': [v3]}})
        if parts == ['v3']:
            return self._send(200, {'version': v3})
        return self._send(404, {'error': {'code': 404, 'title': 'Not Found',
                                          'message': 'lab stand-in'}})

    def do_POST(self):
        self._read_body()
        self._send(403 if self.kind == 'image' else 404,
                   {'error': 'not supported by the lab stand-in'})

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _glance(self, parts, query):
        base = 'http://%s:%s' % self.server.server_address[:2]
        if not parts:
            return self._send(300, {'versions': [{
                'id': 'v2.16', 'status': 'CURRENT',
                'links': [{'rel': 'self', 'href': base + '/v2/'}]}]})
        if parts == ['v2', 'schemas', 'image']:
            return self._send(200, SCHEMA)
        if parts[:2] == ['v2', 'images'] and len(parts) == 2:
            imgs = IMAGES
            for key in ('name', 'id', 'status', 'visibility'):
                if key in query:
                    imgs = [i for i in imgs if str(i.get(key)) in query[key]]
            if 'marker' in query:
                imgs = []
            return self._send(200, {'images': imgs, 'first': '/v2/images',
                                    'schema': '/v2/schemas/images'})
        if parts[:2] == ['v2', 'images'] and len(parts) == 3:
            for img in IMAGES:
                if img['id'] == parts[2]:
                    return self._send(200, img)
        return self._send(404, {'code': 404, 'title': 'Not Found',
                                'message': 'No image found'})

    def _neutron(self, parts, query):
        base = 'http://%s:%s' % self.server.server_address[:2]
        if not parts:
            return self._send(200, {'versions': [{
                'id': 'v2.0', 'status': 'CURRENT',
                'links': [{'rel': 'self', 'href': base + '/v2.0/'}]}]})
        if parts[0] == 'v2.0':
            parts = parts[1:]
        if not parts:
            return self._send(200, {'resources': []})
        last = parts[-1]
        if last.endswith('.json'):
            last = last[:-5]
        if len(parts) == 1:
            return self._send(200, {last.replace('-', '_'): []})
        return self._send(404, {'NeutronError': {
            'type': 'NotFound', 'message': 'not found in the lab stand-in',
            'detail': ''}})


def serve(kind, addr, port):
    handler = type('%sHandler' % kind, (Handler,), {'kind': kind})
    srv = ThreadingHTTPServer((addr, port), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    addr, gport, nport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serve('image', addr, gport)
    serve('network', addr, nport)
    if len(sys.argv) > 4:
        serve('identity', addr, int(sys.argv[4]))
    threading.Event().wait()


if __name__ == '__main__':
    main()
