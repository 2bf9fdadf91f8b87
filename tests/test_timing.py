"""genshop.timing: the interleaving order, call counts and the per-call division."""

from genshop.timing import medians, time_interleaved


def test_time_interleaved_alternates_order_and_counts_calls():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = time_interleaved(fns, rounds=3, calls_per_round=2)
    warm_up, rounds = ["a", "b"], ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert calls == [*warm_up, *rounds]
    assert [len(t) for t in times.values()] == [3, 3]
    assert all(t >= 0 for ts in times.values() for t in ts)


def test_medians_per_name():
    assert medians({"x": [3.0, 1.0, 2.0], "y": [5.0, 4.0]}) == {"x": 2.0, "y": 4.5}
