"""Everything Slack and process: the Bolt app, listeners, rendering, delivery, server, config."""
