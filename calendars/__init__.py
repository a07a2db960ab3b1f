"""Time: durations, local wall-clock windows in IANA zones, and (later) blackouts and ICS."""
