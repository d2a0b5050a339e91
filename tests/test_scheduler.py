"""The generic scheduler as a pure unit, with a fake handler: order, batching, failure propagation, cancellation."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from importer.cancel import Cancellation
from importer.errors import FatalError
from importer.executor import Executor
from importer.scheduler import Outcome, Scheduler, Status
from importer.steps import Action


@dataclass(frozen=True)
class Node:
    id: str
    depends_on: tuple[str, ...] = ()
    group: str | None = None


class Recorder:
    """A fake handler: records each batch, fails the nodes named in `failing`."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.failing = failing
        self.lock = threading.Lock()

    def __call__(self, batch: list[Node]) -> dict[str, Outcome]:
        with self.lock:
            self.batches.append([n.id for n in batch])
        return {n.id: Outcome("boom") for n in batch if n.id in self.failing}


def statuses(results) -> dict[str, Status]:
    return {r.node.id: r.status for r in results}


def test_a_node_runs_only_after_what_it_depends_on():
    nodes = [Node("c", ("b",)), Node("b", ("a",)), Node("a")]
    handler = Recorder()
    results = Scheduler(handler, jobs=4).run(nodes)
    assert [r.node.id for r in results] == ["c", "b", "a"]  # results in the order given
    assert set(statuses(results).values()) == {Status.APPLIED}
    assert [b[0] for b in handler.batches] == ["a", "b", "c"]


def test_ready_nodes_of_one_group_share_batches_of_at_most_the_batch_size():
    nodes = [Node(f"n{i}", group="g") for i in range(7)] + [Node("alone")]
    handler = Recorder()
    results = Scheduler(handler, jobs=1, batch_size=3, group_of=lambda n: n.group).run(nodes)
    assert sorted(len(b) for b in handler.batches) == [1, 1, 3, 3]
    assert ["alone"] in handler.batches
    assert all(r.status is Status.APPLIED for r in results)


def test_ready_nodes_of_a_higher_rank_go_first_and_among_equals_the_oldest_group():
    nodes = [Node("s1", group="s"), Node("s2", group="s2"), Node("t1", ("s1",), group="t"),
             Node("f1", ("t1",), group="f"), Node("t2", ("s2",), group="t")]
    handler = Recorder()
    Scheduler(handler, jobs=1, rank_of=lambda n: "stf".index(n.id[0]), group_of=lambda n: n.group).run(nodes)
    assert handler.batches == [["s1"], ["t1"], ["f1"], ["s2"], ["t2"]]  # deeper first; s1's group is older than s2's


def test_a_group_of_a_rank_that_fills_goes_first_only_once_full_else_when_nothing_else_is_ready():
    # u1..u4: deeper work, each making two m nodes ready; m: a finishing kind whose nodes share one request
    nodes = [Node(f"u{i}") for i in range(1, 5)] + [Node(f"m{i}{j}", (f"u{i}",), group="m")
                                                    for i in range(1, 5) for j in "ab"]
    handler = Recorder()
    Scheduler(handler, jobs=1, batch_size=3, group_of=lambda n: n.group, fill={2},
              rank_of=lambda n: 2 if n.group == "m" else 1).run(nodes)
    assert handler.batches == [["u1"], ["u2"], ["m1a", "m1b", "m2a"], ["u3"], ["m2b", "m3a", "m3b"], ["u4"],
                               ["m4a", "m4b"]]


def test_full_batches_of_a_rank_that_fills_go_first_one_at_a_time_beside_deeper_work():
    # r: a root whose success makes six m nodes (two full batches of a finishing kind) and four d nodes ready
    nodes = [Node("r")] + [Node(f"m{i}", ("r",), group="m") for i in range(6)] + [Node(f"d{i}", ("r",))
                                                                               for i in range(4)]
    started: list[str] = []
    lock = threading.Lock()
    first_wave = threading.Barrier(3, timeout=5)  # the three batches after r all start before any ends

    def handler(batch: list[Node]) -> dict[str, Outcome]:
        with lock:
            started.append(batch[0].id)
            waits = 2 <= len(started) <= 4
        if waits:
            first_wave.wait()
        return {}

    Scheduler(handler, jobs=3, batch_size=3, group_of=lambda n: n.group, fill={2},
              rank_of=lambda n: 2 if n.group == "m" else 1).run(nodes)
    assert set(started[1:4]) == {"m0", "d0", "d1"}  # the second full m batch waits for the first; deeper work goes
    assert sorted(started) == ["d0", "d1", "d2", "d3", "m0", "m3", "r"]


def test_the_descendants_of_a_failed_node_are_skipped_and_others_go_on():
    nodes = [Node("a"), Node("b", ("a",)), Node("c", ("b",)), Node("d")]
    results = statuses(Scheduler(Recorder(failing={"a"}), jobs=2).run(nodes))
    assert results == {"a": Status.FAILED, "b": Status.SKIPPED, "c": Status.SKIPPED, "d": Status.APPLIED}


def test_an_exception_fails_its_batch_only():
    def handler(batch: list[Node]) -> dict[str, Outcome]:
        if batch[0].id == "bad":
            raise ValueError("bad request")
        return {}

    results = Scheduler(handler).run([Node("bad"), Node("good")])
    assert [(r.status, r.error) for r in results] == [(Status.FAILED, "bad request"), (Status.APPLIED, None)]


def test_a_fatal_exception_stops_all_further_work():
    def handler(batch: list[Node]) -> dict[str, Outcome]:
        if batch[0].id == "a":
            raise FatalError("key refused")
        return {}

    scheduler = Scheduler(handler, jobs=1, fatal=(FatalError,))
    results = statuses(scheduler.run([Node("a"), Node("b"), Node("c", ("b",))]))
    assert results == {"a": Status.FAILED, "b": Status.NOT_ATTEMPTED, "c": Status.NOT_ATTEMPTED}
    assert str(scheduler.fatal) == "key refused"


def test_cancellation_mid_run_drains_and_leaves_the_rest_not_attempted():
    cancel = Cancellation()
    started = threading.Event()

    def handler(batch: list[Node]) -> dict[str, Outcome]:
        if batch[0].id == "first":
            started.set()
            cancel.cancel()  # Ctrl-C arrives while this batch works: it finishes, nothing new starts
        return {}

    nodes = [Node("first"), *(Node(f"later{i}", ("first",)) for i in range(5))]
    results = statuses(Scheduler(handler, jobs=1, cancel=cancel).run(nodes))
    assert started.is_set() and results.pop("first") is Status.APPLIED
    assert set(results.values()) == {Status.NOT_ATTEMPTED}


def test_work_cut_short_by_cancellation_is_not_attempted_rather_than_failed():
    cancel = Cancellation()

    def handler(batch: list[Node]) -> dict[str, Outcome]:
        cancel.cancel()
        return {n.id: Outcome("interrupted during upload") for n in batch}

    [result] = Scheduler(handler, cancel=cancel).run([Node("upload")])
    assert result.status is Status.NOT_ATTEMPTED and result.error == "interrupted during upload"


def test_every_action_has_a_handler():
    assert set(Executor.HANDLERS) == set(Action)
