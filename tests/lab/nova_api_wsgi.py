"""gunicorn entry point for the lab's nova-api.

nova's WSGI loader parses sys.argv with oslo.config; under gunicorn that
holds gunicorn's own options, so hide them first.  The application sits
behind the lab's API fault switches (labapifault.py).
"""
import sys

sys.argv = ['nova-api']

import labapifault  # noqa: E402

from nova.wsgi.osapi_compute import application  # noqa: E402

application = labapifault.wrap(application)
