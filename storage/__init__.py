"""Persistence: tables, engine/session set-up, migrations, audit log and outbox."""
