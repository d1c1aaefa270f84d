"""`manage.py runserver`, as django.contrib.staticfiles has it, on a server that sets
TCP_NODELAY on every connection.

Django's request handler writes a response in several small sends. On a kept-alive connection
(the Hub client's, a browser's) Nagle's algorithm holds the last of them until the client's
delayed ACK, about 40 ms later, on every request: an `hf upload` of many files into `make run`
waits that long per call. gunicorn sets TCP_NODELAY too.
"""

from __future__ import annotations

import socket

from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver
from django.core.servers.basehttp import WSGIServer


class NoDelayWSGIServer(WSGIServer):
    def get_request(self):
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class Command(StaticRunserver):
    server_cls = NoDelayWSGIServer
