"""The couplet robot's web app (kexue.fm archives/6270): `POST /api/couplet`, a page, batching.

The post's model labels every position of the first line at once, so lines of many callers can
share one forward pass: the batcher holds each request for at most `wait_s` (or until `max_batch`
wait), then one `CoupletBot.answer_many` call answers them all in a worker thread. With one
forward of a batch of B lines taking t(B) ≈ t₀ + B·t₁ (t₀ the fixed cost of a call), the server
answers up to B / (wait_s + t(B)) requests per second instead of 1 / t(1), and each waits at
most wait_s + t(B) plus the batch ahead of it.

Protocol: `POST /api/couplet` with JSON `{"first": str, "n": 1..10 = 5, "reverse": bool = false}`
→ `{"first", "second", "alternatives": [{"text", "score", "checks", "chars"}], "first_chars"}`,
every char as `{"char", "pinyin", "tone"}` (tone "ping" | "ze" | null, the class the tone rule
uses). Bad input → 422 with `{"detail": one sentence}`; a body over 16 KB → 413, refused from
its Content-Length (or as soon as the streamed bytes pass the limit) without reading the rest.
`/` serves the page of `couplet/static/`, `/docs` (Swagger UI) and `/redoc` the OpenAPI pages,
with their scripts served by the app itself (fastapi-offline): no CDN, so they work offline.
"""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genshop.couplet.bot import CoupletBot, Reply, check_line, load_pretrained
from genshop.couplet.decode import CLASSICAL_DEFAULT
from genshop.couplet.tones import pinyin, tone_class
from genshop.errors import GenshopError

MAX_BODY = 16 * 1024     # bytes of a request body
MAX_LINE = 64            # characters of a line
MAX_N = 10               # alternatives per request
STATIC = Path(__file__).with_name("static")
EXAMPLE = "晚风摇树树还挺"
HAN = "[\u4e00-\u9fff]"  # documented: a line holds at least one such character


# ---- the JSON shapes (documented at /docs) ----

class CoupletRequest(BaseModel):
    """One line to answer."""

    first: str = Field(
        min_length=1, max_length=MAX_LINE, examples=[EXAMPLE],
        json_schema_extra={"pattern": HAN},
        description="the given line (上联; 下联 with reverse), 1 to 64 characters with at least "
                    "one Chinese character; spaces around it are ignored")
    n: int = Field(5, ge=1, le=MAX_N, description="how many ranked alternatives, 1 to 10")
    reverse: bool = Field(False, strict=True, description="answer a 上联 to a given 下联")

    @field_validator("first")
    @classmethod
    def _a_couplet_line(cls, text: str) -> str:
        return check_line(text)

    @field_validator("n", mode="before")
    @classmethod
    def _a_json_number(cls, value: object) -> object:
        """A JSON integer (3 or 3.0), not true or "3", which pydantic would otherwise take."""
        if isinstance(value, bool | str):
            raise ValueError("n must be a number")
        return value


class CharInfo(BaseModel):
    char: str
    pinyin: str = Field(description="with its tone mark, e.g. wǎn; empty for punctuation")
    tone: Literal["ping", "ze"] | None = Field(
        description="平 (ping) or 仄 (ze), the class the tone rule uses; null if none")


class Alternative(BaseModel):
    text: str = Field(description="an answer of the same length as the given line")
    score: float | None = Field(description="ranking score, higher is better (null if -inf)")
    checks: dict[str, bool] = Field(
        description="the couplet rules it keeps: length, position, repetition, tone")
    chars: list[CharInfo]


class CoupletAnswer(BaseModel):
    first: str = Field(description="the given line, stripped")
    second: str = Field(description="the best answer (alternatives[0].text)")
    alternatives: list[Alternative]
    first_chars: list[CharInfo] = Field(description="the given line's pinyin and tones")


class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do, in one sentence")


# ---- from a Reply to JSON ----

@lru_cache(maxsize=16384)
def char_info(ch: str) -> CharInfo:
    """The modern pinyin of one character and the tone class the rule checks use (classical
    Pingshui by default, see `decode`); cached, since a page shows the same characters often."""
    return CharInfo(char=ch, pinyin=pinyin(ch), tone=tone_class(ch, classical=CLASSICAL_DEFAULT))


def answer_of(reply: Reply) -> CoupletAnswer:
    """The JSON answer of a bot's Reply; a non-finite score becomes null (JSON has no inf)."""
    alternatives = [
        Alternative(text=c.text, score=c.score if math.isfinite(c.score) else None,
                    checks=dict(c.checks), chars=[char_info(ch) for ch in c.text])
        for c in reply.alternatives]
    return CoupletAnswer(first=reply.first, second=reply.second, alternatives=alternatives,
                         first_chars=[char_info(ch) for ch in reply.first])


# ---- micro-batching ----

@dataclass
class Job:
    first: str
    n: int
    reverse: bool
    future: asyncio.Future


ReplyMany = Callable[[list[str], int, bool], list[Reply]]


class MicroBatcher:
    """Answers concurrent requests with as few `answer_many` calls as possible.

    One loop takes the first waiting job, gathers more for up to `wait_s` seconds or until
    `max_batch`, and answers each (n, reverse) group with one call in a single worker thread;
    jobs that arrive meanwhile form the next batch. If a batch call fails, its jobs are
    answered one by one, so one bad line fails only its own request.
    """

    def __init__(self, answer_many: ReplyMany, max_batch: int = 32, wait_s: float = 0.002):
        self.answer_many, self.max_batch, self.wait_s = answer_many, max_batch, wait_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="couplet-bot")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        while not self.queue.empty():
            self.queue.get_nowait().future.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, first: str, n: int = 5, reverse: bool = False) -> Reply:
        job = Job(first, n, reverse, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def run(self) -> None:
        while True:
            jobs = await self.collect()
            groups: dict[tuple[int, bool], list[Job]] = {}
            for job in jobs:
                groups.setdefault((job.n, job.reverse), []).append(job)
            for group in groups.values():
                await self.answer(group)

    async def collect(self) -> list[Job]:
        loop = asyncio.get_running_loop()
        jobs = [await self.queue.get()]
        deadline = loop.time() + self.wait_s
        while len(jobs) < self.max_batch:
            if not self.queue.empty():
                jobs.append(self.queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return jobs

    async def answer(self, group: list[Job]) -> None:
        try:
            replies = await self.call([j.first for j in group], group[0].n, group[0].reverse)
        except Exception as err:
            if len(group) == 1:
                settle(group[0].future, error=err)
                return
            for job in group:  # isolate the line that failed
                await self.answer([job])
            return
        for job, reply in zip(group, replies, strict=True):
            settle(job.future, reply)

    async def call(self, firsts: list[str], n: int, reverse: bool) -> list[Reply]:
        loop = asyncio.get_running_loop()
        replies = await loop.run_in_executor(self.executor, self.answer_many, firsts, n, reverse)
        if len(replies) != len(firsts):
            raise RuntimeError(f"answer_many gave {len(replies)} replies to {len(firsts)} lines")
        return replies


def settle(future: asyncio.Future, reply: Reply | None = None, error: Exception | None = None):
    """Hand a result to a waiting request, unless its client has gone (future cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)


# ---- the body limit ----

class BodyTooLarge(HTTPException):
    def __init__(self):
        super().__init__(413, f"The request body is larger than {MAX_BODY // 1024} KB; send "
                              "only a JSON object like {\"first\": \"" + EXAMPLE + "\"}.")


class BodyLimit:
    """ASGI middleware: 413 from a Content-Length over `limit` before reading a byte, and for
    bodies of unknown length as soon as the received bytes pass it (the rest is never read)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_length(scope) > self.limit:
            error = BodyTooLarge()
            response = JSONResponse({"detail": error.detail}, 413, {"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)


def declared_length(scope: Scope) -> int:
    """The request's Content-Length (0 when absent; unreadable counts as too large)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return MAX_BODY + 1
    return 0


# ---- readable 422s ----

JSON_NAMES = {int: "a number", float: "a number", str: "a string", list: "a list",
              dict: "an object", type(None): "null"}
FORM = '{"first": "' + EXAMPLE + '", "n": 5}'


def describe(value: Any) -> str:
    """The JSON kind of a value, for a sentence: "a number", "a list", ..., "true"."""
    if isinstance(value, bool):
        return str(value).lower()
    return JSON_NAMES.get(type(value), "something else")


def readable(error: dict) -> str:
    """One sentence for one pydantic / FastAPI validation error of the request body."""
    loc, kind, ctx = tuple(error.get("loc", ())), error.get("type", ""), error.get("ctx") or {}
    field = loc[1] if len(loc) > 1 else None
    value = error.get("input")
    if kind == "json_invalid":
        return f"The body is not valid JSON ({ctx.get('error', 'unreadable')} at character " \
               f"{field}); send an object like {FORM}."
    if isinstance(value, bytes):
        return f"The body must be JSON sent with the header Content-Type: application/json, " \
               f"like {FORM}."
    if field is None or isinstance(field, int):
        if kind == "missing":
            return f"The body is empty; send a JSON object like {FORM}."
        return f"The body must be a JSON object like {FORM}, got {describe(value)}."
    if kind == "missing":
        return f'The body needs a "{field}" field; send an object like {FORM}.'
    if field == "first":
        if kind == "value_error":
            return str(ctx.get("error", error.get("msg", "")))
        if kind == "string_too_short":
            return "The line is empty; type the first line of a couplet, e.g. " + EXAMPLE + "."
        if kind == "string_unicode":
            return "The line holds a broken character (a lone UTF-16 surrogate); send it as " \
                   "proper UTF-8 text."
        if kind == "string_too_long":
            return f"The line has {len(value)} characters; a couplet line may have at most " \
                   f"{MAX_LINE}."
        return f'"first" must be a string of Chinese characters, got {describe(value)}.'
    if field == "n":
        return f'"n" (how many alternatives) must be a whole number from 1 to {MAX_N}, got ' \
               f"{describe(value) if isinstance(value, bool | str) else value}."
    if field == "reverse":
        return f'"reverse" must be true or false, got {describe(value)}.'
    return f'The field "{field}" is not valid: {error.get("msg", kind)}.'


def problem(status: int, detail: str) -> JSONResponse:
    """A `{"detail": ...}` response whose text always encodes (never echoes a broken char)."""
    safe = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"detail": safe}, status)


async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    detail = readable(errors[0]) if errors else "The request is not valid; send " + FORM + "."
    return problem(422, detail)


UNREADABLE = {UnicodeDecodeError: "it is not UTF-8 text", RecursionError: "it is nested too deeply",
              ValueError: "a number in it has too many digits"}


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    """FastAPI's 400 for a body that json.loads cannot read becomes a readable 422."""
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None:
        reason = next((text for kind, text in UNREADABLE.items() if isinstance(cause, kind)),
                      "it could not be parsed")
        return problem(422, f"The body is not valid JSON ({reason}); send an object like {FORM}.")
    return await http_exception_handler(request, exc)


async def on_genshop_error(request: Request, exc: GenshopError) -> JSONResponse:
    return problem(422, str(exc))


async def on_crash(request: Request, exc: Exception) -> JSONResponse:
    return problem(500, f"The server failed on this request ({type(exc).__name__}); it keeps "
                        "running, so try again or report the line that caused it.")


# ---- the app ----

def warm_up(bot: CoupletBot) -> None:
    """Answer one line before the first caller does: the decoder builds its per-vocabulary
    tables (tone classes of every token; about 1.5 s for 7k characters) on its first call."""
    bot.answer_many([EXAMPLE], n=1)


def create_app(bot: CoupletBot | None = None) -> FastAPI:
    """The FastAPI app; `bot` None loads the shipped model (`load_pretrained`) at startup.
    Any object with `answer_many(firsts, n=, reverse=)` serves as the bot."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        chosen = bot if bot is not None else await asyncio.to_thread(load_pretrained)
        await asyncio.to_thread(warm_up, chosen)
        gc.freeze()  # the model and its tables stay: full collections need not walk them
        batcher = MicroBatcher(lambda firsts, n, reverse: chosen.answer_many(
            firsts, n=n, reverse=reverse))
        batcher.start()
        app.state.bot, app.state.batcher = chosen, batcher
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPIOffline(title="genshop couplet robot", lifespan=lifespan,
                         description="Answer a line of a Chinese couplet (对对联), after "
                                     "kexue.fm 6270.")
    app.add_middleware(BodyLimit)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(GenshopError, on_genshop_error)
    app.add_exception_handler(Exception, on_crash)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.post("/api/couplet", response_model=CoupletAnswer, summary="Answer a couplet line",
              responses={413: {"model": Problem, "description": "body over 16 KB"},
                         422: {"model": Problem, "description": "not a couplet line"}})
    async def couplet(body: CoupletRequest, request: Request) -> Response:
        reply = await request.app.state.batcher.submit(body.first, body.n, body.reverse)
        # pydantic's own JSON writer: the answer is built valid, so FastAPI need not re-check it
        return Response(answer_of(reply).model_dump_json(), media_type="application/json")

    return app
