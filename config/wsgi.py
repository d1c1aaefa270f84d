import os

from django.core.wsgi import get_wsgi_application

from config.wsgi_body import RequireFullBody

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = RequireFullBody(get_wsgi_application())
