"""Config layer: the parameter schema, YAML round-trip, validation and presets."""
