"""easyrtc-server: a fast, drop-in EasyRTC signaling server.

The layout: ``protocol`` is the EasyRTC protocol, sans I/O (the core, its state and rules);
``transport`` is Engine.IO and Socket.IO (sans-I/O protocols and their aiohttp and ASGI drivers);
``server`` runs the protocol behind a transport through an ``engine`` (in memory, or the
``cluster`` node over Redis); ``operations`` is what an operator uses (metrics, admin API,
webhooks, probes); ``app``, ``asgi`` and ``hosting`` put it all in a web application; ``cli``,
``config`` and ``options`` start it. Hooks (``hooks``, ``jwtauth``) are the extension point.
"""

from . import oldpaths
from .options import Options, OptionsError
from .protocol.core import Core, Peer
from .protocol.errors import EasyRtcError, ErrorCode
from .protocol.outcome import Outcome
from .server import EasyRtcServer

__all__ = [
    "Core",
    "EasyRtcError",
    "EasyRtcServer",
    "ErrorCode",
    "Options",
    "OptionsError",
    "Outcome",
    "Peer",
]
__version__ = "0.1.0"

oldpaths.install()  # hook code importing ``easyrtc_server.model`` and the like keeps working
