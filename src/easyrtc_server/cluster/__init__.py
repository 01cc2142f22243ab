"""Cluster mode: several processes or machines serve one EasyRTC world over Redis.

Without ``redis_url`` nothing here runs: one process keeps its state in memory. The design (one
ordered log of state changes in a Redis Stream, every node a replica of the protocol core) is in
``docs/cluster.md``; ``keys`` names what lives in Redis, ``registry`` says which nodes are alive
and where, ``node`` is this process as a node.
"""
