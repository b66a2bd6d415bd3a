"""Resources chosen from the settings: warehouse, source, registry, alerts."""
