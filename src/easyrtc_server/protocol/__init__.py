"""The EasyRTC protocol, sans I/O: one event in, what to send to whom out.

Nothing here reads a socket, a clock or Redis (clocks are injected): the server (one process)
and the cluster node feed these modules events and carry out what they return. ``core`` is the
entry point; ``model`` holds the words (the glossary), ``outcome`` and ``decisions`` what the
core hands back.
"""
