"""Where /predict runs: the event loop for short calls, the thread pool otherwise."""

import pytest

from service.inline import InlinePolicy


def feed(policy, n, cpu_s, wall_s=None, rows=1, inline=False):
    for _ in range(n):
        policy.observe(cpu_s, cpu_s if wall_s is None else wall_s, rows, inline)


def test_nothing_runs_inline_until_warmed_up_then_short_calls_do():
    p = InlinePolicy(budget_s=0.002, warmup=20)
    assert not p.inline(1)
    feed(p, 19, 0.0003)
    assert not p.inline(1)
    feed(p, 1, 0.0003)
    assert p.inline(1)
    assert p.state()["thread_pool_calls"] == 20


def test_slow_models_and_big_batches_go_to_the_thread_pool():
    p = InlinePolicy(budget_s=0.002, warmup=5)
    feed(p, 50, 0.005)  # 5 ms of CPU a call
    assert not p.inline(1)
    fast = InlinePolicy(budget_s=0.002, warmup=5)
    feed(fast, 50, 0.0004, rows=1)
    assert fast.inline(1) and fast.inline(4)
    assert not fast.inline(10)  # expected 4 ms: scaled by rows, pessimistically


def test_a_model_that_slows_down_moves_to_the_pool_and_comes_back():
    p = InlinePolicy(budget_s=0.002, warmup=5, alpha=0.1)
    feed(p, 30, 0.0003, inline=True)
    assert p.inline(1)
    feed(p, 30, 0.01)
    assert not p.inline(1)
    feed(p, 60, 0.0003)
    assert p.inline(1)


def test_a_call_that_blocked_the_loop_sends_the_next_ones_to_the_pool_with_backoff():
    p = InlinePolicy(budget_s=0.002, warmup=5, block_s=0.02)
    feed(p, 10, 0.0003)
    assert p.inline(1)
    p.observe(0.0003, 0.5, 1, inline=True)  # little CPU, long wait: e.g. I/O inside the model
    assert [p.inline(1) for _ in range(64)] == [False] * 64
    assert p.inline(1)
    p.observe(0.0003, 0.5, 1, inline=True)  # again: twice as long in the pool
    assert sum(p.inline(1) for _ in range(128)) == 0
    assert p.inline(1)
    assert p.state()["blocked_loop"] == 2
    # a slow wall time in the pool is not the loop's problem
    p.observe(0.0003, 0.5, 1, inline=False)
    assert p.inline(1)


def test_budget_zero_always_uses_the_pool():
    p = InlinePolicy(budget_s=0.0, warmup=0)
    feed(p, 10, 1e-6)
    assert not p.inline(1)
    with pytest.raises(ValueError):
        InlinePolicy(budget_s=-1)
