"""Shared pytest setup for every test.

Deliberately free of anything Synapse-specific: unit tests run with no network and no homeserver
(`make test-offline`); the Synapse fixtures live in tests/integration/conftest.py.
"""
