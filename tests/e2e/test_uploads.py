"""Files go out through the outbox like messages: made at send time by a named producer, uploaded with
files.uploadV2 (URL, bytes, complete) to a DM or a channel, retried when Slack fails, shared once."""
from __future__ import annotations

from sqlmodel import Session, select

from bot import uploads
from commands import announce
from conftest import CHANNEL
from slack_emulator import dm_of
from storage.db import transaction
from storage.models import Outbox

made: list[dict] = []


@uploads.producer("test_greeting")
def _greeting(db, clock, policy, *, name: str) -> uploads.Upload:
    made.append({"name": name, "at": clock.now()})
    return uploads.Upload(f"hello-{name}.txt", f"hello {name}\n".encode(), f"Hello {name}")


def queue(db, clock, key: str, **kw) -> None:
    with transaction(db) as session:
        announce.upload(session, key=key, producer="test_greeting", args={"name": "ada"}, now=clock.now(), **kw)


def row(db, key: str) -> Outbox:
    with Session(db) as s:
        return s.exec(select(Outbox).where(Outbox.key == key)).one()


def test_a_file_to_a_person_goes_to_their_dm_once_even_when_queued_twice(bot, db, clock):
    queue(db, clock, "upload:test:1", user="U0DEV", comment="Here it is")
    queue(db, clock, "upload:test:1", user="U0DEV", comment="Here it is")  # a replay: same key
    bot.deliver()
    shared = bot.emulator.uploaded()
    assert len(shared) == 1
    f = shared[0]
    assert f["channel"] == dm_of("U0DEV") and f["data"] == b"hello ada\n"
    assert f["filename"] == "hello-ada.txt" and f["title"] == "Hello ada" and f["initial_comment"] == "Here it is"
    assert row(db, "upload:test:1").sent_at is not None
    assert [c.method for c in bot.emulator.calls if c.method.startswith(("files.", "upload", "conversations.open"))] \
        == ["conversations.open", "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


def test_a_failed_upload_is_retried_and_shared_once(bot, db, clock):
    bot.emulator.fail_next("files.completeUploadExternal", status=500)
    queue(db, clock, "upload:test:2", channel=CHANNEL)
    bot.deliver()
    assert bot.emulator.uploaded() == [] and row(db, "upload:test:2").sent_at is None
    clock.advance(minutes=5)
    bot.deliver()
    shared = bot.emulator.uploaded(CHANNEL)
    assert len(shared) == 1 and shared[0]["data"] == b"hello ada\n"
    assert row(db, "upload:test:2").sent_at is not None


def test_a_row_naming_an_unknown_producer_is_not_sent(bot, db, clock):
    with transaction(db) as session:
        announce.upload(session, key="upload:test:3", producer="from_a_newer_version", args={}, now=clock.now(),
                        user="U0DEV")
    bot.deliver()
    assert bot.emulator.uploaded() == [] and row(db, "upload:test:3").sent_at is None
