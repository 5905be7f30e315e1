"""bai webserver: cookie-session login and a re-signing proxy to the gateway (``/func``)."""

from bai.webserver.app import create_app
from bai.webserver.config import SESSION_COOKIE, WebserverConfig

__all__ = ["SESSION_COOKIE", "WebserverConfig", "create_app"]
