"""WSGI entry point for gunicorn: `gunicorn loan_site.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loan_site.settings")
application = get_wsgi_application()
