"""Website sign-in with Login with Amazon: a sans-IO core and two thin shells.

Layer: ``login`` (website sign-in; see ``ARCHITECTURE.md``).

* :class:`LWALogin` (ASGI) and :class:`LWAWSGILogin` (WSGI): ``/login?next=``, the
  callback (``redirect_uri``'s path) and ``/logout``; they set the signed session cookie
  that ``LWAMiddleware(secret_key=...)`` / ``LWAWSGIMiddleware`` read.
* ``LWAMiddleware(..., login=...)`` and ``LWAWSGIMiddleware(..., login=...)`` refresh an
  expired session through the refresh cookie (:mod:`.refresh`).

The core, without I/O: :mod:`.config` (options), :mod:`.core` (the three routes),
:mod:`.state` (state, PKCE, single use), :mod:`.session` (session cookies, refresh
decisions), :mod:`.cookies` (attributes, signing, sealing), :mod:`.redirects` (``next``),
:mod:`.pages` (HTML and JSON answers). See ``docs/login.md``.

"""

from lwa_middleware.login.asgi import LWALogin
from lwa_middleware.login.config import LoginConfig
from lwa_middleware.login.core import Exchange, LoginCore, LoginRequest
from lwa_middleware.login.redirects import safe_next
from lwa_middleware.login.refresh import AsyncRefresher, Refresher
from lwa_middleware.login.session import Refreshed, RefreshPlan, SessionRules, SignedOut
from lwa_middleware.login.state import StateProblem
from lwa_middleware.login.wsgi import LWAWSGILogin

__all__ = [
    "AsyncRefresher",
    "Exchange",
    "LWALogin",
    "LWAWSGILogin",
    "LoginConfig",
    "LoginCore",
    "LoginRequest",
    "RefreshPlan",
    "Refreshed",
    "Refresher",
    "SessionRules",
    "SignedOut",
    "StateProblem",
    "safe_next",
]
