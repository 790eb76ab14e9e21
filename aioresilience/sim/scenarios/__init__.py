"""The built-in scenarios: TOML files in the format users write (see ``aioresilience.sim``)."""
