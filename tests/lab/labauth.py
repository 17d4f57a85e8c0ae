"""Paste filter standing in for keystonemiddleware in the lab's nova-api.

Nova 34 has no noauth2 any more.  A token ``USER:PROJECT`` becomes the
headers keystonemiddleware would set; user ``admin`` gets the admin role
(plus its implied member and reader), anyone else member and reader.
"""
import webob.dec
import webob.exc


class LabAuth:
    def __init__(self, application):
        self.application = application

    @webob.dec.wsgify
    def __call__(self, req):
        token = req.headers.get('X-Auth-Token')
        if not token:
            return webob.exc.HTTPUnauthorized()
        user, _sep, project = token.partition(':')
        project = project or user
        roles = ['admin', 'member', 'reader'] if user == 'admin' else [
            'member', 'reader']
        for hdr in ('X-User-Id', 'X-User', 'X-User-Name', 'X-Project-Id',
                    'X-Tenant-Id', 'X-Roles', 'X-Identity-Status',
                    'X-Service-Catalog', 'X-Project-Name'):
            req.headers.pop(hdr, None)
        req.headers['X-Identity-Status'] = 'Confirmed'
        req.headers['X-User-Id'] = user
        req.headers['X-User-Name'] = user
        req.headers['X-Project-Id'] = project
        req.headers['X-Project-Name'] = project
        req.headers['X-User-Domain-Id'] = 'default'
        req.headers['X-Project-Domain-Id'] = 'default'
        req.headers['X-Roles'] = ','.join(roles)
        return self.application


def filter_factory(global_conf, **local_conf):
    return LabAuth
