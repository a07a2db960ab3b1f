"""Bolt listeners: parse, ack, call commands/, render. Nothing slow before ack()."""
