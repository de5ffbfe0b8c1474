"""The batching dispatcher of /predict, driven as BentoML drives it (`dispatcher(callback)(data)` per request):
a lone request goes at once, requests the loop brings in turn after turn join the batch, arrivals while a batch
runs form the next batch, rows bound a batch, requests queued past the latency bound get the fallback, and a
failing batch fails each of its requests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from service.serving.dispatcher import BatchDispatcher


class Overloaded(Exception):
    pass


def fallback() -> Any:
    raise Overloaded("process is overloaded")


class Model:
    """A batch function: doubles each request's rows; with `hold` set, each batch waits for `release`."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[list[int]]] = []
        self.hold = hold
        self.release = asyncio.Event()

    async def __call__(self, batch: Sequence[list[int]]) -> list[list[int]]:
        self.batches.append(list(batch))
        if self.hold:
            await self.release.wait()
            self.release.clear()
        return [[2 * value for value in rows] for rows in batch]


def dispatcher(max_batch_size: int = 64, max_latency_ms: float = 1000) -> BatchDispatcher:
    return BatchDispatcher(max_latency_ms, max_batch_size, fallback=fallback, get_batch_size=len)


def test_requests_of_one_turn_form_one_batch_and_each_gets_its_own_answer() -> None:
    async def run() -> tuple[list[Any], list[list[list[int]]]]:
        model, batching = Model(), dispatcher()
        answers = await asyncio.gather(*(batching(model)([i, i]) for i in range(5)))
        return answers, model.batches

    answers, batches = asyncio.run(run())
    assert answers == [[2 * i, 2 * i] for i in range(5)]
    assert batches == [[[i, i] for i in range(5)]]


def test_a_lone_request_is_answered_without_waiting() -> None:
    async def run() -> Any:
        model, batching = Model(), dispatcher(max_latency_ms=60_000)
        return await asyncio.wait_for(batching(model)([3]), timeout=0.5)

    assert asyncio.run(run()) == [6]


def test_arrivals_while_a_batch_runs_form_the_next_batch_bounded_by_rows() -> None:
    async def run() -> tuple[list[Any], list[list[list[int]]]]:
        model, batching = Model(hold=True), dispatcher(max_batch_size=4)
        first = asyncio.ensure_future(batching(model)([0]))
        await asyncio.sleep(0.01)  # the first batch is in flight
        later = [asyncio.ensure_future(batching(model)([i] * 2)) for i in range(1, 4)]  # 6 rows queued
        big = asyncio.ensure_future(batching(model)([9] * 6))  # larger than a batch: a batch of its own
        await asyncio.sleep(0.01)
        for _ in range(4):
            model.release.set()
            await asyncio.sleep(0.01)
        return await asyncio.gather(first, *later, big), model.batches

    answers, batches = asyncio.run(run())
    assert answers == [[0], [2, 2], [4, 4], [6, 6], [18] * 6]
    assert batches == [[[0]], [[1, 1], [2, 2]], [[3, 3]], [[9] * 6]]


def test_requests_queued_past_the_latency_bound_get_the_fallback() -> None:
    async def run() -> tuple[Any, Any, Any]:
        model, batching = Model(hold=True), dispatcher(max_latency_ms=20)
        first = asyncio.ensure_future(batching(model)([1]))
        await asyncio.sleep(0.005)
        stale = asyncio.ensure_future(batching(model)([2]))
        await asyncio.sleep(0.05)  # the first batch takes longer than the bound
        model.release.set()
        answer = await first
        with pytest.raises(Overloaded):
            await stale
        model.hold = False
        fresh = await asyncio.wait_for(batching(model)([3]), timeout=0.5)  # the bound counts from arrival
        return answer, fresh, model.batches

    answer, fresh, batches = asyncio.run(run())
    assert answer == [2] and fresh == [6]
    assert [2] not in [
        rows for batch in batches for rows in batch
    ]  # the stale request never reached the model


def test_a_failing_batch_fails_each_of_its_requests_and_the_next_batch_runs() -> None:
    async def broken(batch: Sequence[Any]) -> list[Any]:
        raise ValueError("model broke")

    async def run() -> list[Any]:
        batching = dispatcher()
        outcomes = await asyncio.gather(*(batching(broken)([i]) for i in range(3)), return_exceptions=True)
        return [*outcomes, await batching(Model())([5])]

    *failed, after = asyncio.run(run())
    assert [str(outcome) for outcome in failed] == ["model broke"] * 3
    assert after == [10]


def test_a_request_whose_caller_left_is_not_predicted() -> None:
    async def run() -> list[list[list[int]]]:
        model, batching = Model(hold=True), dispatcher()
        first = asyncio.ensure_future(batching(model)([1]))
        await asyncio.sleep(0.005)
        gone = asyncio.ensure_future(batching(model)([2]))
        kept = asyncio.ensure_future(batching(model)([3]))
        await asyncio.sleep(0.005)
        gone.cancel()
        model.release.set()
        await first
        await asyncio.sleep(0.005)
        model.release.set()
        await kept
        return model.batches

    assert asyncio.run(run()) == [[[1]], [[3]]]


def test_requests_the_loop_brings_in_turn_after_turn_join_the_batch_and_a_pause_ends_it() -> None:
    """As the server brings them: one request a turn or two (a turn reads a request, the next runs its handler),
    while the model blocked the loop (an inline call); a request after a pause of several turns is the next batch."""

    async def arrive(batching: BatchDispatcher, model: Model, rows: list[int], turns: int) -> Any:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await batching(model)(rows)

    async def run() -> tuple[list[Any], list[list[list[int]]]]:
        model, batching = Model(), dispatcher()
        steady = [arrive(batching, model, [i], turns) for i, turns in enumerate((0, 1, 3, 5, 6, 8))]
        late = arrive(batching, model, [9], 40)
        return await asyncio.gather(*steady, late), model.batches

    answers, batches = asyncio.run(run())
    assert answers == [[0], [2], [4], [6], [8], [10], [18]]
    assert batches == [[[0], [1], [2], [3], [4], [5]], [[9]]]


def test_gathering_stops_at_a_full_batch() -> None:
    async def run() -> list[list[list[int]]]:
        model, batching = Model(), dispatcher(max_batch_size=3)

        async def arrive(i: int) -> Any:
            for _ in range(i):
                await asyncio.sleep(0)
            return await batching(model)([i])

        await asyncio.gather(*(arrive(i) for i in range(7)))
        return model.batches

    assert asyncio.run(run()) == [[[0], [1], [2]], [[3], [4], [5]], [[6]]]
