"""easyrtc-server: a fast, drop-in EasyRTC signaling server."""

from .core import Core, Peer
from .errors import EasyRtcError, ErrorCode
from .options import Options, OptionsError
from .outcome import Outcome
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
