"""SQLite's writers in one process queue at storage.db.WriteGate, and a waiting ack goes before waiting
after-ack work: under a burst an ack no longer loses SQLite's lock to after-ack writers again and again."""
from __future__ import annotations

import threading

import pytest

from storage.db import Busy, WriteGate, ack_write, make_engine, transaction


def test_a_waiting_ack_enters_before_after_ack_work_that_waited_longer():
    gate, order = WriteGate(), []
    holder, work, ack = object(), object(), object()
    assert gate.enter(holder, ack=False, timeout=1)

    def writer(conn, is_ack: bool, name: str) -> None:
        assert gate.enter(conn, ack=is_ack, timeout=30)
        order.append(name)
        gate.leave(conn)

    after_ack = threading.Thread(target=writer, args=(work, False, "after-ack work"))
    after_ack.start()
    assert gate.wait_for_waiting(1, timeout=30)
    acking = threading.Thread(target=writer, args=(ack, True, "ack"))
    acking.start()
    assert gate.wait_for_waiting(2, timeout=30)
    gate.leave(holder)
    after_ack.join(30)
    acking.join(30)
    assert order == ["ack", "after-ack work"]


def test_an_ack_that_cannot_enter_within_its_wait_is_refused_and_the_holder_goes_on():
    gate, holder = WriteGate(), object()
    assert gate.enter(holder, ack=False, timeout=1)
    assert not gate.enter(object(), ack=True, timeout=0)
    assert gate.enter(holder, ack=False, timeout=0)  # its own next transaction
    gate.leave(holder)
    assert gate.enter(object(), ack=True, timeout=0)


def test_an_ack_write_is_busy_while_after_ack_work_of_this_process_writes(tmp_path):
    db = make_engine(f"sqlite:///{tmp_path}/gate.db")  # the gate is SQLite's: PostgreSQL locks rows
    try:
        with transaction(db) as session:
            session.connection()  # begun: it holds the write lock
            with pytest.raises(Busy):
                with ack_write(db, wait=0) as acking:
                    acking.connection()
        with ack_write(db, wait=0) as session:  # given back at its commit and checkin
            session.connection()
    finally:
        db.dispose()


def test_after_ack_work_waiting_for_sqlites_lock_lets_an_ack_that_came_go_first():
    gate, order = WriteGate(), []
    work, ack = object(), object()
    assert gate.enter(work, ack=False, timeout=1)  # it holds the gate and waits for another process's lock

    def acking() -> None:
        assert gate.enter(ack, ack=True, timeout=30)
        order.append("ack")
        gate.leave(ack)

    thread = threading.Thread(target=acking)
    thread.start()
    assert gate.wait_for_waiting(1, timeout=30)
    assert gate.step_aside(work, timeout=30)  # back once the ack has been and gone
    order.append("after-ack work")
    thread.join(30)
    assert order == ["ack", "after-ack work"]
    assert not gate.enter(object(), ack=True, timeout=0)  # it holds the gate again
    gate.leave(work)


def test_stepping_aside_with_no_ack_waiting_keeps_the_gate():
    gate, work = WriteGate(), object()
    assert gate.enter(work, ack=False, timeout=1)
    assert gate.step_aside(work, timeout=0)
    assert not gate.enter(object(), ack=True, timeout=0)
