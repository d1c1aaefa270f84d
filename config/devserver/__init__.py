"""The development server `make run` starts (`manage.py runserver`), answering kept-alive
connections without Nagle stalls. Listed before django.contrib.staticfiles, whose runserver it
extends."""
