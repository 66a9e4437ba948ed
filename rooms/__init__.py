"""Family-room lifecycle: creating rooms, power levels, mirroring membership into the roster,
start-up reconciliation and the invite policy. No Matrix I/O: every action is queued in the
outbox inside the caller's transaction."""
