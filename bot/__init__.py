"""The running process: configuration, CLI, the Matrix client, the sync loop, event routing,
the scheduler and the outbox sender. The top layer: it builds everything once and hands it down."""

__version__ = "0.1.0"
"""The one place the version is written; pyproject.toml reads it from here."""
