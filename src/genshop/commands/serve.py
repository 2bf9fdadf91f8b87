"""`genshop serve [--host 127.0.0.1] [--port 8000]`: the couplet robot's web page and JSON API.

The robot of "a couplet robot from CNN + sequence labelling" (kexue.fm archives/6270), served by
uvicorn: the page at `/`, `POST /api/couplet` (see `genshop.couplet.server`), OpenAPI docs at
`/docs`. The shipped model is loaded and the socket bound before the server starts, so a missing
model, a port in use or a bad host is one line and exit 2.
"""

from __future__ import annotations

import argparse
import socket

from genshop.errors import BadInputError
from genshop.threads import torch_threads

NAME = "serve"
HELP = "serve the couplet robot: a web page and a JSON API (POST /api/couplet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; "
                        "0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 1 to 65535 (default: 8000)")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a BadInputError saying why not."""
    if not 1 <= port <= 65535:
        raise BadInputError(f"--port must be between 1 and 65535, got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise BadInputError(f"cannot use --host {host!r} ({err}); try 127.0.0.1") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise BadInputError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose "
                            "another --port or stop the program that holds it") from None
    return sock


def run(args: argparse.Namespace) -> int:
    # Imported here: uvicorn, FastAPI and the model cost about a second, which every other
    # `genshop` command would pay for, since the CLI imports all command modules.
    import uvicorn

    from genshop.couplet.bot import load_pretrained
    from genshop.couplet.server import create_app

    sock = bind(args.host, args.port)
    app = create_app(load_pretrained())
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"genshop serve: the couplet robot is at http://{shown}:{args.port}/ (Ctrl-C stops)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    with torch_threads(1):  # one line's forward pass is too small to share between threads
        server.run(sockets=[sock])
    return 0
