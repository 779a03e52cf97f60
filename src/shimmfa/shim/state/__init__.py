"""State: what the shim must remember across restarts, in the SQLite state
DB (`db`, `store`), and its key files (`keys`); the technicians the gate
knows (`technicians`) and the port's login backoff (`port_backoff`).

The lowest layer of the shim: may import `settings` and `config`, never
another part of the shim.
"""
