"""Where /predict calls the model: on the event loop while calls of that batch size are short, in a thread
otherwise, timed each time; a new model (the follower switched versions) starts over in the thread."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from service.serving.model_calls import ModelCalls


class Model:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[int] = []

    def predict(self, rows: dict[str, np.ndarray], /) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds)
        return {"y": rows["x"] * 2}


def calls(model_calls: ModelCalls, model: Model, sizes: list[int]) -> list[bool]:
    """For each call (one after the other, in one event loop): whether it ran on the loop's own thread."""

    async def run() -> list[bool]:
        loop_thread = threading.get_ident()
        for size in sizes:
            rows = np.ones((size, 3), np.float32)
            np.testing.assert_array_equal((await model_calls.predict(model, {"x": rows}))["y"], rows * 2)
        return [thread == loop_thread for thread in model.threads]

    return asyncio.run(run())


def test_short_calls_run_on_the_loop_once_their_size_has_been_timed() -> None:
    model_calls = ModelCalls(inline_max_s=0.05)
    # 1 and 5 rows: first seen, so timed in the thread; again: on the loop. 6 rows is 5's size class (4-7).
    assert calls(model_calls, Model(0.0), [1, 1, 5, 5, 6, 1]) == [False, True, False, True, True, True]


def test_long_calls_stay_in_the_thread() -> None:
    model_calls = ModelCalls(inline_max_s=0.005)
    assert calls(model_calls, Model(0.02), [1, 1, 1, 8, 8]) == [False] * 5


def test_a_call_that_grew_long_on_the_loop_sends_the_next_one_to_the_thread() -> None:
    model_calls = ModelCalls(inline_max_s=0.01)
    model = Model(0.0)

    async def run() -> list[bool]:
        loop_thread = threading.get_ident()
        rows = {"x": np.ones((2, 3), np.float32)}
        await model_calls.predict(model, rows)  # timed in the thread: short
        await model_calls.predict(model, rows)  # on the loop
        model.seconds = 0.03
        await model_calls.predict(model, rows)  # on the loop, and now long
        await model_calls.predict(model, rows)  # in the thread
        return [thread == loop_thread for thread in model.threads]

    assert asyncio.run(run()) == [False, True, True, False]


def test_a_new_model_is_timed_anew() -> None:
    model_calls = ModelCalls(inline_max_s=0.05)
    first, second = Model(0.0), Model(0.0)
    assert calls(model_calls, first, [2, 2]) == [False, True]
    assert calls(model_calls, second, [2, 2]) == [False, True]


def test_a_zero_bound_never_blocks_the_loop() -> None:
    assert calls(ModelCalls(inline_max_s=0.0), Model(0.0), [1, 1, 1]) == [False] * 3
