"""The checks ``featurelite serve``'s options get before the server starts: a bearer token
any HTTP client can send (never an empty one, which would turn auth off), and an address
this machine can listen on; and the check of the token a command sends to a server."""

from __future__ import annotations

import errno
import os
import socket

import click

from .cli_output import CommandFailure

__all__ = ["TOKEN_ENV", "URL_ENV", "check_bind", "check_client_token", "check_token"]

#: The environment variable ``serve`` reads its bearer token from (and the commands that
#: use a server, the token they send).
TOKEN_ENV = "FEATURELITE_TOKEN"
#: The environment variable naming the server the commands with ``--url`` use.
URL_ENV = "FEATURELITE_URL"


def check_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A bearer token, or None for no auth. An empty token would turn auth off without a
    word (the server treats a falsy token as none), so it is refused, as is one no HTTP
    client could send (whitespace around it, control or non-ASCII characters)."""
    from_env = ctx.get_parameter_source("token") is click.core.ParameterSource.ENVIRONMENT
    if value is None and os.environ.get(TOKEN_ENV) is not None:
        # click treats an environment variable set to "" as not set at all: that is exactly
        # the silent "auth off" this check exists to refuse.
        value, from_env = os.environ[TOKEN_ENV], True
    if value is None:
        return None
    where = f"${TOKEN_ENV}" if from_env else "--token"
    fix = f"unset {TOKEN_ENV}" if from_env else "leave --token out"
    if not value.strip():
        raise click.BadParameter(f"it is empty, which would turn auth off; give a token, or {fix} to "
                                 "serve without auth", param_hint=f"'{where}'")
    if value != value.strip() or not all(" " < ch < "\x7f" for ch in value):
        raise click.BadParameter("a token must be printable ASCII without spaces (it travels in an "
                                 "HTTP Authorization header)", param_hint=f"'{where}'")
    return value


def check_client_token(value: str | None, where: str) -> str | None:
    """The token a command sends to a server (None: none), or a usage error naming
    ``where`` it came from when no HTTP client could send it."""
    if value is None:
        return None
    if not value.strip() or value != value.strip() or not all(" " < ch < "\x7f" for ch in value):
        raise click.BadParameter("a token must be printable ASCII without spaces (it travels in an HTTP "
                                 "Authorization header)", param_hint=where)
    return value


def check_bind(host: str, port: int) -> None:
    """Fail early, with one line, when ``host:port`` cannot be listened on: a host that does
    not resolve is a usage error, an address this machine does not have (or a port in use
    or reserved) is exit 1. The probe socket is closed before the server binds."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise click.BadParameter(f"{host!r} is not an address or a host name this machine can resolve ({exc})",
                                 param_hint="'--host'") from None
    family, kind, proto, _, address = found[0]
    with socket.socket(family, kind, proto) as probe:
        # uvicorn sets SO_REUSEADDR too: a port left in TIME_WAIT is free to it, so to the probe.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = " (is the port in use?)" if exc.errno == errno.EADDRINUSE else ""
            raise CommandFailure(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
