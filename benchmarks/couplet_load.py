"""Load on the couplet web app (kexue.fm archives/6270): 32 clients for 30 s.

Starts the server in a child process (uvicorn on a free 127.0.0.1 port, the shipped model or
the tiny test bot) or targets a running one on this machine (`--url`, loopback only), then runs
`--clients` concurrent clients, each posting probe lines of 2 to 7 characters to
`/api/couplet` back to back over one kept-alive HTTP/1.1 connection (a minimal asyncio client:
httpx spent more CPU per request than the server), for `--seconds` (after a 2-s warm-up
that is not counted) or until `--max-requests`. It prints requests/s, the p50 and p99 latency
(nearest-rank percentiles of every request's round trip) and the errors (non-200 answers and
failed connections). Targets on 2 cores: 0 errors, ≥ 300 requests/s, p99 ≤ 100 ms.

It also prints the CPU time per request of client and started server (from /proc), and so the
server's capacity on one whole core, requests / server CPU seconds: the server answers from one
process whose Python work holds one core, and on a shared machine its share of a core is what
limits req/s. With C clients that never pause, the mean latency is C / throughput (Little's law),
so p99 ≤ 100 ms for 32 clients needs well over 320 req/s.

Run: .venv/bin/python benchmarks/couplet_load.py [--bot pretrained|tiny|FOLDER] [--url URL]
     [--clients 32] [--seconds 30] [--n 5]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

LINES = ["晚风摇树树还挺", "今天天气不错", "鱼跃此时海", "只有香如故", "科学空间", "明月松间照",
         "春风", "清泉石上流"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the ceil(q·N)-th smallest value."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def loopback_only(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        sys.exit(f"couplet_load: --url must point at this machine (127.0.0.1, localhost, ::1), "
                 f"got {url}")
    return url.rstrip("/")


def serve(bot_name: str, port: int, threads: int) -> None:
    """The child process: the app under uvicorn, access log off, as `genshop serve` runs it.
    `bot_name`: "pretrained", "tiny", a folder that `CoupletBot.save` wrote, or a
    `genshop train couplet` run directory."""
    import torch
    import uvicorn

    from genshop.couplet.bot import load_bot, load_pretrained, load_run_bot, tiny_bot
    from genshop.couplet.server import create_app

    torch.set_num_threads(threads)
    if bot_name in ("tiny", "pretrained"):
        bot = tiny_bot() if bot_name == "tiny" else load_pretrained()
    else:
        folder = Path(bot_name)
        bot = load_run_bot(folder) if (folder / "best.json").is_file() else load_bot(folder)
    uvicorn.run(create_app(bot), host="127.0.0.1", port=port, log_level="warning")


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(bot_name: str, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--serve-child", bot_name,
                              "--port", str(port), "--threads", str(threads)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            sys.exit(f"couplet_load: the server exited with code {child.returncode}")
        try:
            with urllib.request.urlopen(url + "/openapi.json", timeout=1):
                return child, url
        except OSError:
            time.sleep(0.2)
    child.terminate()
    sys.exit("couplet_load: the server did not answer within 60 s")


class Connection:
    """One kept-alive HTTP/1.1 connection speaking just enough HTTP for this API: a lean client,
    so that the client's own CPU time does not hide the server's on a 2-core machine."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        """Send one prepared request; return the status after reading the whole answer."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await self.reader.readexactly(length)
            return int(head.split(b" ", 2)[1])
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def prepared(host: str, port: int, n: int) -> list[bytes]:
    """The raw POST of each probe line."""
    requests = []
    for line in LINES:
        body = json.dumps({"first": line, "n": n}, ensure_ascii=False).encode("utf-8")
        requests.append(f"POST /api/couplet HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                        f"\r\n\r\n".encode() + body)
    return requests


async def client(conn: Connection, requests: list[bytes], k: int, stop: float,
                 count_from: float, budget: list[int], latencies: list[float],
                 errors: list[str]) -> None:
    i = k
    while time.perf_counter() < stop and budget[0] > 0:
        request = requests[i % len(requests)]
        i += 1
        start = time.perf_counter()
        try:
            status = await conn.post(request)
            failure = None if status == 200 else f"HTTP {status}"
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError) as err:
            failure = type(err).__name__
        end = time.perf_counter()
        budget[1] += 1
        if start < count_from:
            continue  # warm-up
        budget[0] -= 1
        latencies.append(end - start)
        if failure:
            errors.append(failure)
    conn.close()


async def load(url: str, clients: int, seconds: float, n: int, max_requests: int,
               warmup: float = 2.0) -> tuple[list[float], list[str], float, int]:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    requests = prepared(host, port, n)
    now = time.perf_counter()
    count_from, stop = now + warmup, now + warmup + seconds
    latencies: list[float] = []
    errors: list[str] = []
    budget = [max_requests, 0]  # requests left to count, requests finished in all
    await asyncio.gather(*(client(Connection(host, port), requests, k, stop, count_from,
                                  budget, latencies, errors) for k in range(clients)))
    elapsed = min(time.perf_counter(), stop) - count_from
    return latencies, errors, elapsed, budget[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bot", default="pretrained",
                   help="pretrained (the shipped model), tiny (the test bot), a folder that "
                        "CoupletBot.save wrote, or a `genshop train couplet` run directory")
    p.add_argument("--url", help="a running server on this machine, e.g. http://127.0.0.1:8000")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--n", type=int, default=5, help="alternatives per request (default 5)")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop after this many")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the started server")
    p.add_argument("--serve-child", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_child:
        serve(args.serve_child, args.port, args.threads)
        return
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 600):
        sys.exit("couplet_load: --clients must be 1 to 256 and --seconds 0 to 600")
    child = None
    if args.url:
        url, what = loopback_only(args.url), args.url
    else:
        child, url = start_server(args.bot, args.threads)
        what = f"{args.bot} bot, torch threads {args.threads}"
    server_cpu = cpu_seconds(child.pid) if child else None
    client_cpu, wall = time.process_time(), time.perf_counter()
    try:
        latencies, errors, elapsed, finished = asyncio.run(
            load(url, args.clients, args.seconds, args.n, args.max_requests))
        client_cpu, wall = time.process_time() - client_cpu, time.perf_counter() - wall
        if server_cpu is not None:
            server_cpu = cpu_seconds(child.pid) - server_cpu
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)
    print(f"server: {what}; {args.clients} clients, n={args.n}, {elapsed:.1f} s")
    if not latencies:
        sys.exit("couplet_load: no request finished")
    kinds = {e: errors.count(e) for e in sorted(set(errors))}
    print(f"requests {len(latencies)} | {len(latencies) / elapsed:.0f} req/s | "
          f"p50 {1000 * percentile(latencies, 0.5):.1f} ms | "
          f"p99 {1000 * percentile(latencies, 0.99):.1f} ms | errors {len(errors)}"
          + (f" {kinds}" if kinds else ""))
    cpu = f"client {1000 * client_cpu / finished:.2f}"
    if server_cpu is not None:
        cpu += (f", server {1000 * server_cpu / finished:.2f} (the server used "
                f"{server_cpu / wall:.2f} of a core; one whole core would serve about "
                f"{finished / server_cpu:.0f} req/s)")
    print(f"CPU ms per request (warm-up included): {cpu}")


if __name__ == "__main__":
    main()
