"""Integration tests of teams across federating homeservers."""
