"""The team logic below the commands: family-room lifecycle (`family_room`), who may be on a
team (`admission`), mirroring membership into the roster (`membership`, `reconcile`), and the
still-involved prompts (`prompts`). No Matrix I/O: every action is queued in the outbox inside
the caller's transaction, and Matrix is reached only through the gateway `bot` provides.
"""
