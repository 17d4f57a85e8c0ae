"""gunicorn entry point for the lab's nova-api.

nova's WSGI loader parses sys.argv with oslo.config; under gunicorn that
holds gunicorn's own options, so hide them first.
"""
import sys

sys.argv = ['nova-api']

from nova.wsgi.osapi_compute import application  # noqa: E402,F401
