"""The dashboard's server: Streamlit running app.py, answering only the host names it is browsed by.

A web page elsewhere can make a browser resolve its own name to 127.0.0.1 (DNS rebinding) and so
reach the dashboard on loopback, with its own name in the Host and Origin headers. Streamlit checks
the Host of its WebSocket against server.allowedHosts (dashboard/.streamlit/config.toml), but not
that of its HTTP routes: the middleware below refuses (403) any request, page or WebSocket, whose
Host, or Origin when it has one, names a host outside that list. Started by dashboard/run.sh
(`streamlit run server.py`, which serves the st.App found here); see dashboard/README.md, "Who can
see it".
"""

from urllib.parse import urlsplit

import streamlit as st
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from streamlit.web.server.starlette.starlette_websocket import is_host_allowed  # the WebSocket's check

REFUSED = (
    "Forbidden: this request's Host or Origin is not one of the dashboard's host names "
    "(server.allowedHosts, STREAMLIT_SERVER_ALLOWED_HOSTS; see dashboard/README.md).\n"
)


def allowed(headers: Headers) -> bool:
    """Whether the Host, and the Origin if any, name an allowed host (all do when the list is empty)."""
    origin = headers.get("origin")
    return is_host_allowed(headers.get("host")) and (
        origin is None or is_host_allowed(urlsplit(origin).netloc)
    )


class AllowedHostsOnly:
    """ASGI middleware: a 403 answer to an HTTP request or WebSocket handshake that is not allowed()."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not allowed(Headers(scope=scope)):
            await PlainTextResponse(REFUSED, status_code=403)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


app = st.App("app.py", middleware=[Middleware(AllowedHostsOnly)])
