"""The ``gateway`` subcommand: serve :class:`~lwa_middleware.gateway.LWAGateway` for a proxy.

``lwa-middleware gateway --proxy nginx --port 9090`` answers nginx's ``auth_request`` (and
Caddy's ``forward_auth``, Traefik's ``ForwardAuth``, Envoy's ``ext_authz`` with the other
``--proxy`` modes) at ``/auth``, with the middleware's options from the ``LWA_*``
environment (:func:`lwa_middleware.gateway.from_env`). One uvicorn process, its
proxy-header rewriting off (the gateway trusts the transport peer); for several workers,
``uvicorn --factory lwa_middleware.gateway:from_env --workers N --no-proxy-headers``.
"""

from __future__ import annotations

import argparse

from lwa_middleware.cli.console import fail, say
from lwa_middleware.cli.serving import (
    add_serving_parser,
    require_uvicorn,
    start_server,
    stop_signals,
    wait,
)
from lwa_middleware.core.errors import ConfigurationError

GATEWAY_PORT = 9090


def add_gateway_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``lwa-middleware gateway``."""
    parser = add_serving_parser(
        commands,
        "gateway",
        summary="answer a proxy's forward-auth checks (nginx, Caddy, Traefik, Envoy)",
        description="Serve the LWA gateway: nginx auth_request, Caddy forward_auth, Traefik "
        "ForwardAuth and Envoy ext_authz ask it at /auth about each request and get 2xx "
        "with X-Auth-Request-User/-Email/-Name/-Scopes, or 401/403. The middleware's "
        "options come from the LWA_* environment (LWA_CLIENT_IDS, LWA_EXCLUDE, LWA_ALLOW, "
        "LWA_REDIS_URL, ...); each option below also reads LWA_GATEWAY_<NAME>.",
        port=GATEWAY_PORT,
    )
    parser.add_argument(
        "--proxy",
        choices=("nginx", "forwarded", "envoy"),
        help="where the original request is read: nginx = X-Original-URI/-Method "
        "(nginx, ingress-nginx); forwarded = X-Forwarded-Uri/-Method/-Host/-Proto "
        "(Caddy, Traefik); envoy = the path after /auth (Envoy ext_authz path_prefix) "
        "(default: nginx)",
    )
    parser.add_argument(
        "--trusted-proxy",
        dest="trusted_proxies",
        action="append",
        metavar="CIDR",
        help="an address or network of a proxy allowed to ask (repeat for more; "
        "default: 127.0.0.1 and ::1); anyone else is refused",
    )
    parser.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        action="append",
        metavar="HOST",
        help="a host a browser may be sent back to after signing in (app.example.com, "
        "app.example.com:8443, .example.com for every subdomain; repeat for more)",
    )
    parser.add_argument(
        "--redirect-uri",
        metavar="URL",
        help="turn the website sign-in on: the URL of <prefix>/callback on your site, "
        "registered with LWA (also LWA_REDIRECT_URI; needs LWA_SECRET_KEY; the client "
        "secret is read from LWA_CLIENT_SECRET, never from the command line)",
    )
    parser.add_argument(
        "--sign-in-prefix",
        metavar="PATH",
        help="where the sign-in is served (default: /_lwa)",
    )
    parser.add_argument(
        "--cookie-domain",
        metavar="DOMAIN",
        help="the session cookie's Domain, to share it with sibling hosts (example.com)",
    )
    parser.add_argument(
        "--authorize-url",
        metavar="URL",
        help="Amazon's consent page (default: https://www.amazon.com/ap/oa; an emulator's "
        "/ap/oa in tests)",
    )
    parser.set_defaults(run=run_gateway)


def run_gateway(args: argparse.Namespace) -> int:
    """Serve the gateway until Ctrl-C."""
    require_uvicorn("gateway")
    from lwa_middleware.emulator import serve
    from lwa_middleware.gateway import from_env

    try:
        gateway = from_env(
            proxy=args.proxy,
            trusted_proxies=args.trusted_proxies,
            allowed_hosts=args.allowed_hosts,
            sign_in_prefix=args.sign_in_prefix,
            redirect_uri=args.redirect_uri,
            cookie_domain=args.cookie_domain,
            authorize_url=args.authorize_url,
        )
    except ConfigurationError as exc:
        fail(str(exc))
    with stop_signals() as stop:
        server = start_server(
            "gateway",
            args.host,
            args.port,
            lambda: serve(
                gateway,
                args.host,
                args.port,
                lifespan="on",
                proxy_headers=False,  # the peer it trusts is the transport peer
                server_header=False,
            ),
        )
        try:
            say(banner(gateway, server.url), flush=True)
            return wait(stop, [server])
        finally:
            server.stop()


def banner(gateway: object, url: str) -> str:
    """What ``lwa-middleware gateway`` prints once serving."""
    from lwa_middleware.gateway import LWAGateway

    assert isinstance(gateway, LWAGateway)
    where = f"{url}/auth" + ("/<original path>" if gateway.mode == "envoy" else "")
    peers = ", ".join(str(network) for network in gateway.peers.networks)
    lines = [
        f"LWA gateway running at {where}  (Ctrl-C to stop)",
        f"  proxy mode       {gateway.mode}",
        f"  trusted proxies  {peers}",
    ]
    if gateway.login is not None:
        lines.append(f"  sign-in          {url}{gateway.prefix}/login?rd=<where to go back>")
        hosts = ", ".join(e.host for e in gateway.allowed_hosts.entries) or "local paths only"
        lines.append(f"  back to          {hosts}")
    return "\n".join(lines)
