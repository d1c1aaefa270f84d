"""`make run`'s server (`manage.py runserver`) answers kept-alive clients without Nagle stalls."""

from __future__ import annotations

import socket

from django.core.management import get_commands, load_command_class

from config.devserver.management.commands.runserver import NoDelayWSGIServer


def test_runserver_is_the_one_that_sets_tcp_nodelay_and_still_serves_static_files():
    command = load_command_class(get_commands()["runserver"], "runserver")
    assert command.server_cls is NoDelayWSGIServer
    parser = command.create_parser("manage.py", "runserver")
    assert parser.parse_args([]).use_static_handler  # django.contrib.staticfiles' options kept


def test_every_accepted_connection_has_tcp_nodelay():
    server = NoDelayWSGIServer(("127.0.0.1", 0), None)
    try:
        with socket.create_connection(server.server_address[:2]) as client:
            accepted, _ = server.get_request()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    finally:
        server.server_close()
