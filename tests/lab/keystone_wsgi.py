"""gunicorn entry point for the lab's Keystone.

keystone's WSGI loader parses sys.argv with oslo.config; under gunicorn
that holds gunicorn's own options, so hide them first (as for nova-api).
"""
import sys

sys.argv = ['keystone']

from keystone.wsgi import api  # noqa: E402

application = api.application
