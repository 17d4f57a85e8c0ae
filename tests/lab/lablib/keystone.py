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

"""The lab's Keystone: configuration text, users, catalog and tokens.

The lab runs a real Keystone (fernet tokens, its own MariaDB database,
under gunicorn) and every service validates tokens with keystonemiddleware,
as in a real cloud.  This module holds what labctl needs around it:

* the configuration: keystone.conf, and the password-auth sections that
  Nova, Placement and the Glance/Neutron stand-ins use to reach Keystone
  (``[keystone_authtoken]``, ``[service_user]``, ``[placement]``...);
* the accounts and the service catalog, created through the identity API
  as an operator would after ``keystone-manage bootstrap``;
* tokens for labctl's own API calls (admin), renewed before they expire.

Standard library only: it runs under the system python3 with labctl.
"""
import json
import time
import urllib.error
import urllib.request

#: Keystone's own default for ``[token] expiration``.
DEFAULT_EXPIRATION = 3600
REGION = 'RegionOne'
DOMAIN = 'Default'
#: (user, project, password, role)
ADMIN = ('admin', 'admin', 'Lab-Admin-5ecret', 'admin')
MEMBER = ('demo', 'demo', 'Lab-Demo-5ecret', 'member')
#: Service users, in project ``service`` with the admin and service roles
#: (as devstack creates them).  The placement and neutron passwords are
#: those of the hypervisors' realistic /etc/nova/nova.conf.
SERVICE_PROJECT = 'service'
SERVICE_USERS = {'nova': 'Nova-5ecret', 'placement': 'Placement-5ecret',
                 'glance': 'Glance-5ecret', 'neutron': 'Neutron-5ecret'}
#: Renew labctl's token this long before it expires (keystoneauth: 120 s,
#: but the lab's tokens may live shorter than that).
RENEW_MARGIN = 10


def keystone_conf(*, state, db_url, expiration, log_file):
    return """\
[DEFAULT]
debug = false
use_stderr = false
log_file = %(log)s

[database]
connection = %(db)s
max_pool_size = 5

[token]
provider = fernet
# labctl up --token-expiration SECONDS (Keystone's default: 3600)
expiration = %(exp)d

[fernet_tokens]
key_repository = %(state)s/keystone/fernet-keys

[fernet_receipts]
key_repository = %(state)s/keystone/fernet-keys

[credential]
key_repository = %(state)s/keystone/credential-keys

[identity]
# bcrypt's cheapest cost: the lab's many short-lived clients each sign in
# with a password, and the hashing cost is not what the lab tests
password_hash_rounds = 4

[cache]
# in-process (one gunicorn worker): token validation without a round of
# database queries each time, as memcached gives a real Keystone
enabled = true
backend = oslo_cache.dict
""" % dict(log=log_file, db=db_url, exp=expiration, state=state)


def auth_section(group, auth_url, user, *, extra=''):
    """An oslo.config section with keystoneauth password options."""
    return """\
[%(group)s]
auth_type = password
auth_url = %(url)s
project_domain_name = %(dom)s
user_domain_name = %(dom)s
project_name = %(project)s
username = %(user)s
password = %(password)s
region_name = %(region)s
%(extra)s""" % dict(group=group, url=auth_url, dom=DOMAIN,
                    project=SERVICE_PROJECT, user=user,
                    password=SERVICE_USERS[user], region=REGION, extra=extra)


def authtoken_section(auth_url, user):
    """``[keystone_authtoken]`` for a service validating tokens."""
    return auth_section(
        'keystone_authtoken', auth_url, user,
        extra='www_authenticate_uri = %s\n'
              'service_token_roles_required = true\n' % auth_url)


def authtoken_options(auth_url, user):
    """The same, as the options dict of keystonemiddleware's AuthProtocol
    (the Glance/Neutron stand-ins)."""
    return {'auth_type': 'password', 'auth_url': auth_url,
            'www_authenticate_uri': auth_url,
            'project_domain_name': DOMAIN, 'user_domain_name': DOMAIN,
            'project_name': SERVICE_PROJECT, 'username': user,
            'password': SERVICE_USERS[user], 'region_name': REGION,
            'service_token_roles_required': True}


def nova_client_sections(auth_url):
    """How Nova's services reach Keystone, Placement and Neutron, and the
    service token they send along with a user's (``[service_user]``)."""
    return '\n'.join([
        auth_section('placement', auth_url, 'placement',
                     extra='valid_interfaces = internal,public\n'),
        auth_section('neutron', auth_url, 'neutron'),
        auth_section('service_user', auth_url, 'nova',
                     extra='send_service_user_token = true\n'),
        '[glance]\nregion_name = %s\n' % REGION])


class Error(RuntimeError):
    pass


class Keystone:
    """The identity API at ``url`` (``http://HOST:PORT``)."""

    def __init__(self, url):
        self.url = url.rstrip('/')
        self._admin = None   # (token, renew at, monotonic)

    def call(self, method, path, body=None, token=None, ok=(200, 201, 204),
             timeout=60):
        """JSON in, (status, headers, JSON out); Error unless ``ok``."""
        req = urllib.request.Request(self.url + path, method=method)
        req.add_header('Accept', 'application/json')
        if token:
            req.add_header('X-Auth-Token', token)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req, data, timeout=timeout) as resp:
                raw, code, headers = resp.read(), resp.status, resp.headers
        except urllib.error.HTTPError as e:
            raw, code, headers = e.read(), e.code, e.headers
        if code not in ok:
            raise Error('%s %s -> %d %s' % (
                method, path, code, raw[:300].decode('utf-8', 'replace')))
        return code, headers, json.loads(raw) if raw else {}

    def issue(self, user, project, password):
        """A project-scoped token: (token, lifetime in seconds)."""
        body = {'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': user, 'domain': {'name': DOMAIN},
                'password': password}}},
            'scope': {'project': {'name': project,
                                  'domain': {'name': DOMAIN}}}}}
        _code, headers, data = self.call('POST', '/v3/auth/tokens', body)
        tok = data['token']
        life = _epoch(tok['expires_at']) - _epoch(tok['issued_at'])
        return headers['X-Subject-Token'], life

    def admin_token(self, renew=False):
        """The admin's token, renewed shortly before it expires."""
        now = time.monotonic()
        if renew or not self._admin or now >= self._admin[1]:
            token, life = self.issue(ADMIN[0], ADMIN[1], ADMIN[2])
            self._admin = (token, now + max(1, life - RENEW_MARGIN))
        return self._admin[0]

    def account_token(self, user_id, project_id):
        """A token of the lab account (admin or member) with these IDs, in
        that project, or None: what a server's owner acts with."""
        for user, project, password, _role in (ADMIN, MEMBER):
            if (self._find('users', user) == user_id
                    and self._find('projects', project) == project_id):
                return self.issue(user, project, password)[0]
        return None

    # -- accounts and catalog ---------------------------------------------

    def _find(self, kind, name, query=''):
        items = self.call('GET', '/v3/%s?name=%s%s' % (kind, name, query),
                          token=self.admin_token())[2][kind]
        return items[0]['id'] if items else None

    def _ensure(self, kind, name, body, query=''):
        found = self._find(kind, name, query)
        if found:
            return found
        single = kind[:-1]
        return self.call('POST', '/v3/' + kind, {single: body},
                         token=self.admin_token())[2][single]['id']

    def _grant(self, project_id, user_id, role):
        role_id = self._find('roles', role)
        self.call('PUT', '/v3/projects/%s/users/%s/roles/%s' % (
            project_id, user_id, role_id), token=self.admin_token())

    def _user(self, name, password, project_id, roles):
        uid = self._ensure('users', name, {
            'name': name, 'password': password, 'domain_id': 'default',
            'default_project_id': project_id, 'enabled': True})
        for role in roles:
            self._grant(project_id, uid, role)

    def _service(self, kind, name, url):
        sid = self._ensure('services', name, {'type': kind, 'name': name,
                                              'enabled': True})
        have = self.call('GET', '/v3/endpoints?service_id=%s' % sid,
                         token=self.admin_token())[2]['endpoints']
        for iface in ('public', 'internal'):
            if not any(e['interface'] == iface for e in have):
                self.call('POST', '/v3/endpoints', {'endpoint': {
                    'service_id': sid, 'interface': iface, 'url': url,
                    'region_id': REGION, 'enabled': True}},
                    token=self.admin_token())

    def ensure_resources(self, catalog):
        """Projects, users, roles and the catalog the lab needs, after
        ``keystone-manage bootstrap`` made the admin, the roles and the
        identity endpoints.  ``catalog``: [(type, name, url)]."""
        projects = {}
        for name in (SERVICE_PROJECT, MEMBER[1]):
            projects[name] = self._ensure('projects', name, {
                'name': name, 'domain_id': 'default', 'enabled': True})
        user, project, password, role = MEMBER
        self._user(user, password, projects[project], [role])
        for user, password in sorted(SERVICE_USERS.items()):
            self._user(user, password, projects[SERVICE_PROJECT],
                       ['admin', 'service'])
        for kind, name, url in catalog:
            self._service(kind, name, url)


def _epoch(stamp):
    """Keystone's ``2026-11-27T15:00:00.000000Z`` -> seconds."""
    stamp = stamp.rstrip('Z').split('.')[0]
    return time.mktime(time.strptime(stamp, '%Y-%m-%dT%H:%M:%S'))
