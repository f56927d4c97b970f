"""Running registry requests side by side, for back ends' ``map``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["parallel_map"]

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> list[R]:
    """``[fn(item) for item in items]`` on ``concurrency`` threads, in input order.

    The first failure (in input order among those that failed) is re-raised and
    work not yet started is cancelled.
    """
    work = list(items)
    if len(work) <= 1 or concurrency <= 1:
        return [fn(item) for item in work]
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(work)), thread_name_prefix="regprune"
    ) as pool:
        futures = [pool.submit(fn, item) for item in work]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and not future.cancelled():
                error = future.exception()
                if error is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise error
        return [future.result() for future in futures]
