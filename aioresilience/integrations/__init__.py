"""Integrations with other libraries, one module each, each behind an extra; importing
``aioresilience`` imports none of them."""
