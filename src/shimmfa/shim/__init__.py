"""The shim daemon: thin I/O adapters around `shimmfa.core`, one folder per
concern.

- `daemon`: wires every part together and runs it (`shimmfa run`); only
  the CLI imports it.
- `admin`: audited operator actions on the shim (tamper reset).
- `config`, `settings`: the YAML file and its typed settings table.
- `link/`: the data path, technician port -> session loop -> gate -> device
  port; imports nothing of the shim but `settings`.
- `recorder/`: every session recorded, encrypted and signed (side branch).
- `reporting/`: the durable outbox, heartbeats, events, systemd notify
  (side branch).
- `tamper/`: sensors, the latching detector, boot integrity.
- `state/`: the SQLite state DB, key files, technicians, port backoff.

The layering (`pyproject.toml`, checked by `make lint`): daemon <- admin <-
link | recorder | reporting <- tamper <- state <- config <- settings. The
shim may import `shimmfa.core`, `shimmfa.transport` and `shimmfa.errors`;
never `shimmfa.central` or `shimmfa.quorum`.
"""
