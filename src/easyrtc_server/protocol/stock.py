"""What the stock hooks answer to the core's decisions, as a function of the decision alone.

``hooks.Hooks`` says no to nothing: its ``authenticate``, ``room_create``, ``room_join`` and
``authenticated`` do nothing, its ``ice_servers`` gives ``ice.ice_servers``. An answer that needs
no hook to run can be computed by whoever applies the decision, so a cluster's replicas answer
the decisions of an event whose node runs the stock hooks themselves, as they apply it: a login
is one log entry instead of four (``cluster.replica``). The server's hooks' path
(``server.EasyRtcServer.ask_hooks``) gives the same answers for stock hooks.
"""

from __future__ import annotations

from ..options import Options
from .decisions import (
    Answer,
    Decision,
    JoinAnswer,
    JoinRequested,
    LoginAdmitted,
    LoginAnswer,
    LoginRequested,
    TokenAnswer,
)
from .ice import ice_servers


def stock_answer(decision: Decision, options: Options, *, answering: bool) -> Answer | None:
    """The stock hooks' answer to ``decision``; None for one they do not answer alike
    everywhere (a message for the server, an unknown command: the node's hooks answer).
    ``answering``: the caller builds the reply (the ICE servers, fresh TURN credentials
    included, are only made where they are sent)."""
    match decision:
        case LoginRequested(request=request):
            return LoginAnswer(request.app_name, request.username, request.rooms)
        case JoinRequested():
            return JoinAnswer()
        case LoginAdmitted(conn=conn):
            servers = ice_servers(conn, options) if answering else []
            return TokenAnswer(servers, conn.username, conn.presence, conn.fields)
    return None
