"""A generic scheduler of dependent work: it knows nothing of Moveshelf.

A node is submitted when the nodes it depends on have succeeded; ready nodes that share
a group go out together as one batch (one request), at most `batch_size` at a time; at
most `jobs` batches run at once; the descendants of a node that failed are skipped, and
those of a node never attempted are not attempted either. Cancellation stops the
submission of new work and waits for the work under way. It returns a result per node
instead of raising; an exception of the given `fatal` kinds stops all further work. Work cut
short by cancellation counts as not attempted, never as failed.
"""

from __future__ import annotations

import enum
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Container, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .cancel import Cancellation


class Node(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...


N = TypeVar("N", bound=Node)


class Status(enum.Enum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one node of a batch went: no error means applied."""

    error: str | None = None
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Result(Generic[N]):
    node: N
    status: Status
    error: str | None = None
    bytes: int = 0
    started: float | None = None  # wall-clock seconds since the epoch, for reports
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return round(self.finished - self.started, 3) if self.started and self.finished else 0.0


Handler = Callable[[list[N]], dict[str, Outcome]]  # a batch -> each node's outcome (a missing one: applied)
GroupOf = Callable[[N], Hashable | None]  # None: the node goes alone
RankOf = Callable[[N], int]  # ready nodes of a higher rank go first
Key = tuple[str, Hashable]  # a group of ready nodes: ("group", what group_of says) or ("single", the node's id)


class _Ready(Generic[N]):
    """Nodes whose dependencies are done, grouped by what can share one request: the groups of the highest rank
    first, among them the oldest; a group of a rank in `fill` goes first only once it fills a batch and no batch of
    it is under way, and otherwise when nothing else is ready (its nodes come ready one by one, and would go out
    one request each; when many come ready at once, as when the first subjects of a run have been created, its
    batches go one after another beside the deeper work instead of taking every slot ahead of it). (The nodes of
    a group share their rank.)"""

    def __init__(self, group_of: GroupOf, batch_size: int, rank_of: RankOf, fill: Container[int] = ()) -> None:
        self._ranks: defaultdict[int, OrderedDict[Key, list[N]]] = defaultdict(OrderedDict)
        self._group_of = group_of
        self._rank_of = rank_of
        self._batch_size = batch_size
        self._fill = fill

    def __bool__(self) -> bool:
        return any(self._ranks.values())

    def add(self, node: N) -> None:
        group = self._group_of(node)
        groups = self._ranks[self._rank_of(node)]
        groups.setdefault(("single", node.id) if group is None else ("group", group), []).append(node)

    def _goes(self, rank: int, group: Key, nodes: list[N], under_way: Container[Key]) -> bool:
        return (rank not in self._fill or group[0] == "single"
                or (len(nodes) >= self._batch_size and group not in under_way))

    def take(self, under_way: Container[Key] = ()) -> tuple[Key, list[N]]:
        """The first group of the highest rank that goes (else of the highest rank), up to the batch size of it,
        with its key; `under_way` holds the keys of groups with a batch running."""
        ranks = sorted((rank for rank, groups in self._ranks.items() if groups), reverse=True)
        going = ((rank, group) for rank in ranks for group, nodes in self._ranks[rank].items()
                 if self._goes(rank, group, nodes, under_way))
        rank, group = next(going, None) or (ranks[0], next(iter(self._ranks[ranks[0]])))
        groups = self._ranks[rank]
        nodes = groups[group]
        if len(nodes) > self._batch_size:
            groups[group] = nodes[self._batch_size:]
        else:
            del groups[group]
        return group, nodes[:self._batch_size]


class Scheduler(Generic[N]):
    def __init__(self, handle: Handler, *, jobs: int = 8, batch_size: int = 50, group_of: GroupOf = lambda n: None,
                 rank_of: RankOf = lambda n: 0, fill: Container[int] = (),
                 cancel: Cancellation | None = None, fatal: tuple[type[BaseException], ...] = (),
                 on_result: Callable[[Result[N]], None] = lambda r: None) -> None:
        self._handle = handle
        self._jobs = max(1, jobs)
        self._batch_size = max(1, batch_size)
        self._group_of = group_of
        self._rank_of = rank_of
        self._fill = fill
        self._cancel = cancel or Cancellation()
        self._fatal_kinds = fatal
        self._on_result = on_result
        self.fatal: BaseException | None = None  # the exception that stopped the run, if any

    def _stopping(self) -> bool:
        return self.fatal is not None or self._cancel.cancelled

    def run(self, nodes: Sequence[N]) -> list[Result[N]]:
        """Every node's result, in the order given. Ctrl-C (KeyboardInterrupt) cancels, then drains."""
        by_id = {n.id: n for n in nodes}
        waiting = {n.id: {d for d in n.depends_on if d in by_id} for n in nodes}
        dependents: dict[str, list[str]] = defaultdict(list)
        for node_id, deps in waiting.items():
            for dep in deps:
                dependents[dep].append(node_id)
        ready: _Ready[N] = _Ready(self._group_of, self._batch_size, self._rank_of, self._fill)
        for node in nodes:
            if not waiting[node.id]:
                ready.add(node)
        results: dict[str, Result[N]] = {}
        running: dict[Future, Key] = {}  # each batch under way, with its group
        under_way: Counter[Key] = Counter()
        with ThreadPoolExecutor(max_workers=self._jobs, thread_name_prefix="step") as pool:
            while ready or running:
                try:
                    while ready and len(running) < self._jobs and not self._stopping():
                        group, batch = ready.take(under_way)
                        under_way[group] += 1
                        running[pool.submit(self._run_batch, batch)] = group
                    if not running:
                        break
                    done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        group = running.pop(future)
                        under_way[group] -= 1
                        if not under_way[group]:
                            del under_way[group]
                        for result in future.result():
                            self._finish(result, results, by_id, waiting, dependents, ready)
                except KeyboardInterrupt:
                    self._cancel.cancel()
        for node in nodes:
            if node.id not in results:
                self._record(Result(node, Status.NOT_ATTEMPTED), results)
        return [results[n.id] for n in nodes]

    def _record(self, result: Result[N], results: dict[str, Result[N]]) -> None:
        results[result.node.id] = result
        self._on_result(result)

    def _finish(self, result: Result[N], results: dict[str, Result[N]], by_id: dict[str, N],
                waiting: dict[str, set[str]], dependents: dict[str, list[str]], ready: _Ready[N]) -> None:
        self._record(result, results)
        if result.status is Status.APPLIED:
            for child in dependents[result.node.id]:
                waiting[child].discard(result.node.id)
                if not waiting[child]:
                    ready.add(by_id[child])
            return
        blocked = deque(dependents[result.node.id])
        status = Status.NOT_ATTEMPTED if result.status is Status.NOT_ATTEMPTED else Status.SKIPPED
        while blocked:
            child = blocked.popleft()
            if child not in results:
                self._record(Result(by_id[child], status, f"depends on {result.node.id}, which was "
                                    f"{result.status.value}"), results)
                blocked.extend(dependents[child])

    def _run_batch(self, batch: list[N]) -> list[Result[N]]:
        """Run a batch; every node gets a result, whatever happens."""
        if self._stopping():
            return [Result(n, Status.NOT_ATTEMPTED) for n in batch]
        started = time.time()
        try:
            outcomes = self._handle(batch)
        except self._fatal_kinds as exc:
            self.fatal = exc
            outcomes = dict.fromkeys((n.id for n in batch), Outcome(str(exc)))
        except Exception as exc:  # noqa: BLE001 - one batch's failure must not lose the outcomes of the others
            outcomes = dict.fromkeys((n.id for n in batch), Outcome(_describe(exc)))
        finished = time.time()
        failed = Status.NOT_ATTEMPTED if self._cancel.cancelled else Status.FAILED  # cut short: a re-run resumes
        return [Result(n, failed if o.error else Status.APPLIED, o.error, o.bytes, started, finished)
                for n, o in ((n, outcomes.get(n.id, Outcome())) for n in batch)]


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
