"""Settings: every tunable of the subnet with its default, unit and reason."""
