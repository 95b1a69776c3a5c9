"""A picture of a concurrency sweep: throughput and latency against requests in flight."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from modelwire.bench.loadgen import LoadResult

__all__ = ["plot_sweep"]


def plot_sweep(results: Sequence[LoadResult], path: Path, title: str) -> None:
    """Write a PNG: throughput (left) and p50/p90/p99 latency (right) per concurrency."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    concurrency = [r.concurrency for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(concurrency, [r.throughput for r in results], marker="o")
    left.set_xlabel("requests in flight")
    left.set_ylabel("requests per second")
    left.set_xscale("log", base=2)
    for q in (50, 90, 99):
        right.plot(concurrency, [r.percentile_ms(q) for r in results], marker="o", label=f"p{q}")
    right.set_xlabel("requests in flight")
    right.set_ylabel("latency (ms)")
    right.set_xscale("log", base=2)
    right.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
