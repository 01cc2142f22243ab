"""The ASGI application the ``ours-uvicorn`` benchmark variants serve under uvicorn.

``create_asgi_app`` with the options ``easyrtc-server`` would read from the environment
(``EASYRTC_*``), so that the runner hands every variant its options the same way. Which stack
it serves (the lean one, or python-socketio) is ``create_asgi_app``'s choice: ``bench/run.py``
checks that ``ours-uvicorn`` answers an Engine.IO 3 handshake, which only the lean stack does.

    uvicorn --factory --app-dir bench asgi_app:app --port 8080
"""

from __future__ import annotations

from easyrtc_server.asgi import EasyRtcAsgiApp, create_asgi_app
from easyrtc_server.config import load_options


def app() -> EasyRtcAsgiApp:
    """A fresh application with the options of the environment."""
    return create_asgi_app(load_options())
