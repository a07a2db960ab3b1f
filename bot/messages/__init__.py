"""Rendering: pure functions from records to Block Kit. User text is always escaped here."""
