"""The `relais` command, split by concern (platform, administration, reports)."""
