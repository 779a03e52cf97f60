"""Event delivery shared by the shim and the central service: the sinks
(`noop`, `file`, `syslog`, `https`) and the sender thread that empties a
durable queue into one of them.

May import `core` and `errors` only; never `shim`, `quorum` or `central`.
"""
