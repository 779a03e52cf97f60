"""The link: the data path between the technician's and the device's ports.

A byte from the technician: `serialport` (the port, opened by `ports`) ->
`relay` (the session loop) -> `core.gate` (while the gate is closed) or a
session's `pumps` (while it is open: `wire`'s chunk step, in C from
`_wire.c`, run straight from `passthrough`'s selector) -> `outlet` (the
other port's writer). Recording and reporting are side branches, reached
only through the narrow protocols the relay takes (`Sessions`, `Tap`,
`Authenticator`).

May import `core`, `errors` and `settings`; nothing else of the shim.
"""
