"""Exact nearest-neighbour search for IMLE/GLANN (kexue.fm 6394): throughput and peak memory of
`genshop.neighbours.nearest` against the naive full distance matrix and faiss's exact flat index.

For every case (queries × pool × dim, uniform [0, 1) float32 points, seeded) four methods are
timed in turn within each round (the order reversed every other round, `time_interleaved`,
medians of the rounds), all finding the nearest pool point of every query:

* blocked: `nearest(queries, pool)` with its default block (exact, certified against rounding);
* naive: `torch.cdist(queries, pool).argmin(1)`, the whole queries × pool matrix at once
  (skipped where that matrix alone would exceed --max-naive-gib, which is then the point);
* faiss: `faiss.IndexFlatL2` built on the pool and searched (only where faiss is importable;
  building the index is counted, as an IMLE pool changes at every re-match);
* gemm: only the products queries_block @ poolᵀ at the blocked search's block size, the floor
  of any exact search: its time over each method's is that method's share of the matmul floor.

Peak memory: each method runs once more in a fresh interpreter that makes the same data, resets
the kernel's peak-RSS mark (writing 5 to /proc/self/clear_refs, Linux ≥ 4.0), runs the search
and reports VmHWM − VmRSS-before from /proc/self/status: the working memory the method adds on
top of queries and pool at its peak. (ru_maxrss cannot be reset and already holds the import's
peak; torch keeps no allocator statistics on the CPU; tracemalloc does not see torch.)
"agrees" is the fraction of queries whose index equals the blocked search's (exact up to ties).

Run: .venv/bin/python benchmarks/neighbours.py [--queries 10000] [--pools 20000,100000]
     [--dims 64,784] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable

import torch

from genshop.neighbours import default_block, nearest
from genshop.timing import medians, time_interleaved

try:
    import faiss
except ImportError:
    faiss = None

METHODS = ("blocked", "naive", "faiss", "gemm")


def make_data(n: int, m: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n * 7 + m * 3 + dim)
    return torch.rand(n, dim, generator=g), torch.rand(m, dim, generator=g)


def naive_bytes(n: int, m: int) -> int:
    return 4 * n * m


def search_fn(method: str, q: torch.Tensor, p: torch.Tensor) -> Callable[[], torch.Tensor | None]:
    """A call that finds the nearest pool index of every query (None for the gemm floor)."""
    if method == "blocked":
        return lambda: nearest(q, p)[0][:, 0]
    if method == "naive":
        return lambda: torch.cdist(q, p).argmin(1)
    if method == "faiss":
        def run_faiss() -> torch.Tensor:
            index = faiss.IndexFlatL2(p.shape[1])
            index.add(p.numpy())
            return torch.from_numpy(index.search(q.numpy(), 1)[1][:, 0])
        return run_faiss
    block = default_block(len(p), p.shape[1])

    def gemm() -> None:
        for s in range(0, len(q), block):
            torch.mm(q[s:s + block], p.T)
    return gemm


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1])


def child(method: str, n: int, m: int, dim: int, threads: int) -> None:
    """Runs one search in this fresh process and prints its peak-RSS growth in KiB."""
    set_threads(threads)
    q, p = make_data(n, m, dim)
    fn = search_fn(method, q, p)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_kib("VmRSS")
    fn()
    print(json.dumps({"before_kib": before, "after_kib": status_kib("VmHWM")}))


def peak_growth_mib(method: str, n: int, m: int, dim: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "--child", method, "--queries", str(n), "--pools", str(m),
           "--dims", str(dim), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    return (rss["after_kib"] - rss["before_kib"]) / 1024


def methods_for(n: int, m: int, max_naive_gib: float) -> tuple[list[str], dict[str, str]]:
    skipped = {}
    if naive_bytes(n, m) > max_naive_gib * 2**30:
        skipped["naive"] = f"needs {naive_bytes(n, m) / 2**30:.1f} GiB for the matrix"
    if faiss is None:
        skipped["faiss"] = "faiss not importable"
    return [x for x in METHODS if x not in skipped], skipped


def run_case(n: int, m: int, dim: int, args: argparse.Namespace) -> None:
    q, p = make_data(n, m, dim)
    methods, skipped = methods_for(n, m, args.max_naive_gib)
    fns = {x: search_fn(x, q, p) for x in methods}
    exact = fns["blocked"]()
    agrees = {x: (fns[x]() == exact).double().mean().item() for x in methods if x != "gemm"}
    seconds = medians(time_interleaved(fns, args.rounds))
    floor = seconds["gemm"]
    gflops = 2 * n * m * dim / floor / 1e9
    for x in METHODS:
        case = f"{n} × {m} × {dim}"
        if x in skipped:
            print(f"{case} | {x} | — | — | — | — | {skipped[x]}")
            continue
        mib = peak_growth_mib(x, n, m, dim, args.threads)
        agree = f"{agrees[x]:.4f}" if x in agrees else "—"
        note = f"{gflops:.0f} GFLOP/s" if x == "gemm" else ""
        print(f"{case} | {x} | {n / seconds[x]:,.0f} | {floor / seconds[x]:.0%} | {mib:,.0f} | "
              f"{agree} | {note}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--pools", default="20000,100000", help="comma-separated pool sizes")
    ap.add_argument("--dims", default="64,784", help="comma-separated dimensions")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-naive-gib", type=float, default=8.0,
                    help="skip the naive matrix above this size")
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    pools = [int(x) for x in args.pools.split(",")]
    dims = [int(x) for x in args.dims.split(",")]
    if args.child:
        child(args.child, args.queries, pools[0], dims[0], args.threads)
        return
    set_threads(args.threads)
    version = faiss.__version__ if faiss is not None else "not importable"
    print(f"torch {torch.__version__}, faiss {version}, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds, medians")
    print("queries × pool × dim | method | queries/s | share of gemm floor | peak memory MiB "
          "| agrees with exact | note")
    for dim in dims:
        for m in pools:
            run_case(args.queries, m, dim, args)


if __name__ == "__main__":
    main()
