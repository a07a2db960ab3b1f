"""the audit log is hash-chained, and its head is signed into checkpoints

Every audit event gets its place (seq), the previous event's hash and its own
(storage/audit_chain.py documents the canonical form), so a row edited, deleted
or inserted behind the bot's back shows when the chain is walked. The existing
events are chained here, in id order. The append-only triggers (0002) refuse
the UPDATE that does it, so they are dropped for this step and made again,
letting through only the chaining of a new event as its transaction commits.
audit_chain_head is the one row every writer locks; audit_checkpoint keeps the
signed heads posted to AUDIT_CHANNEL.

Revision ID: 0015
Revises: 0022
"""
import sqlalchemy as sa
from alembic import op

import storage.models
from storage import audit_chain, audit_triggers
from storage.db import canonical_json

revision = "0015"
down_revision = "0022"
branch_labels = None
depends_on = None

TS = storage.models.UTCDateTime
BATCH = 2000


def _drop_triggers(pg: bool) -> None:
    for statement in audit_triggers.drop(pg):
        op.execute(statement)


def _create_triggers(pg: bool, chained: bool = True) -> None:
    for statement in audit_triggers.create(pg, chained):
        op.execute(statement)


def _chain_existing() -> tuple[int, str]:
    bind = op.get_bind()
    events = sa.table("audit_event", sa.column("id", sa.Integer()), sa.column("release_id", sa.Integer()),
                      sa.column("actor", sa.String()), sa.column("action", sa.String()), sa.column("at", TS()),
                      sa.column("reason", sa.Text()), sa.column("before", sa.JSON()), sa.column("after", sa.JSON()),
                      sa.column("seq", sa.BigInteger()), sa.column("prev_hash", sa.String()),
                      sa.column("hash", sa.String()))
    # before/after are rewritten in their canonical spelling (storage.db.canonical_json), the bytes the hash
    # covers; as text, so whatever JSON serializer this connection's engine has does not matter.
    text_param = (lambda name: sa.cast(sa.bindparam(name, type_=sa.Text()), sa.JSON())) if bind.dialect.name == \
        "postgresql" else (lambda name: sa.bindparam(name, type_=sa.Text()))
    update = (events.update().where(events.c.id == sa.bindparam("row_id"))
              .values(seq=sa.bindparam("s"), prev_hash=sa.bindparam("p"), hash=sa.bindparam("h"),
                      before=text_param("b"), after=text_param("a")))
    seq, prev, last_id = 0, audit_chain.GENESIS, 0
    while True:
        rows = bind.execute(sa.select(events).where(events.c.id > last_id).order_by(events.c.id).limit(BATCH)).all()
        if not rows:
            return seq, prev
        params = []
        for r in rows:
            seq += 1
            h = audit_chain.event_hash(seq=seq, prev_hash=prev, release_id=r.release_id, actor=r.actor,
                                       action=r.action, at=r.at, reason=r.reason, before=r.before, after=r.after)
            params.append({"row_id": r.id, "s": seq, "p": prev, "h": h, "b": canonical_json(r.before),
                           "a": canonical_json(r.after)})
            prev, last_id = h, r.id
        bind.execute(update, params)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    _drop_triggers(pg)
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    seq, head = _chain_existing()
    with op.batch_alter_table("audit_event") as batch:
        batch.create_unique_constraint("uq_audit_event_seq", ["seq"])
    _create_triggers(pg)  # after the batch step: on SQLite it rebuilds the table, which drops its triggers
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(sa.text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, :seq, :hash)")
               .bindparams(seq=seq, hash=head))
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=80), nullable=False, unique=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", TS(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=80), nullable=False),
        sa.Column("signature", sa.String(length=120), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=True),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_chain_head")
    _drop_triggers(pg)
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_constraint("uq_audit_event_seq", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
    _create_triggers(pg, chained=False)
