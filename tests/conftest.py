"""Shared test helpers. Every async test runs in virtual time (aioresilience.testing)."""
