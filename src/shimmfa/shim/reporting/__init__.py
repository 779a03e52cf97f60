"""Reporting: what the shim tells the world, and what it exchanges with
central. Events wait in the durable `outbox` (the state DB) until
`transport`'s sender delivers them; `alerts` and `records` turn what the
daemon and the recorder do into events; `heartbeats` are signed; `notify`
talks to systemd. `central_sync` pulls the technician bundle
(`bundle_sync`) and uploads finished recordings (`uploads`) over
`central`'s client.

May import `tamper/` (the software digest a heartbeat carries), `state/`,
`settings`, `config` and `shimmfa.transport`; never `link/` or `recorder/`.
"""
