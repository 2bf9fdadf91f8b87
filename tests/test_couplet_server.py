"""The couplet web app (kexue.fm archives/6270): `POST /api/couplet`, readable 422s,
the 16 KB body limit, micro-batching into one `answer_many` call, the page, `genshop serve`, and
a schemathesis fuzz of the API from its own OpenAPI schema (no 5xx, responses as documented)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
import time

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from genshop.cli import main
from genshop.commands.serve import bind
from genshop.couplet.bot import check_line, tiny_bot
from genshop.couplet.decode import CLASSICAL_DEFAULT
from genshop.couplet.server import EXAMPLE, MAX_BODY, STATIC, create_app
from genshop.couplet.tones import pinyin, tone_class
from genshop.errors import BadInputError

RULES = {"length", "position", "repetition", "tone"}
LINES = ["晚风摇树树还挺", "今天天气不错", "鱼跃此时海", "只有香如故", "科学空间", "春风",
         "明月松间照", "清泉石上流"]


@pytest.fixture(scope="module")
def bot():
    return tiny_bot()


@pytest.fixture(scope="module")
def client(bot):
    with TestClient(create_app(bot)) as c:
        yield c


class CountingBot:
    """Wraps a bot, records every `answer_many` batch; `delay` seconds per call let requests pile
    up; a line containing `bad` makes the whole batch raise."""

    def __init__(self, bot, delay: float = 0.0, bad: str | None = None,
                 error: type[Exception] = BadInputError):
        self.bot, self.delay, self.bad, self.error = bot, delay, bad, error
        self.batches: list[list[str]] = []

    def answer_many(self, firsts, n=5, reverse=False):
        self.batches.append(list(firsts))
        time.sleep(self.delay)
        if self.bad is not None and any(self.bad in f for f in firsts):
            raise self.error(f"the test bot refuses lines with {self.bad}")
        return self.bot.answer_many(firsts, n=n, reverse=reverse)


def post(client, body: bytes, content_type: str = "application/json"):
    return client.post("/api/couplet", content=body, headers={"content-type": content_type})


def as_json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# ---- a good request ----

def test_answer_matches_the_bot_and_carries_pinyin_tones_and_checks(client, bot):
    r = client.post("/api/couplet", json={"first": "晚风摇树树还挺", "n": 3})
    assert r.status_code == 200
    data = r.json()
    direct = bot.answer("晚风摇树树还挺", n=3)
    assert data["first"] == "晚风摇树树还挺"
    assert data["second"] == direct.second == data["alternatives"][0]["text"]
    assert [a["text"] for a in data["alternatives"]] == [c.text for c in direct.alternatives]
    assert [a["score"] for a in data["alternatives"]] == pytest.approx(
        [c.score for c in direct.alternatives])
    assert len(data["alternatives"]) == 3
    for alt, cand in zip(data["alternatives"], direct.alternatives, strict=True):
        assert len(alt["text"]) == 7
        assert alt["checks"] == cand.checks and set(alt["checks"]) == RULES
        assert [c["char"] for c in alt["chars"]] == list(alt["text"])
        assert [c["pinyin"] for c in alt["chars"]] == [pinyin(ch) for ch in alt["text"]]
        assert [c["tone"] for c in alt["chars"]] == [
            tone_class(ch, classical=CLASSICAL_DEFAULT) for ch in alt["text"]]
    # hand-checked readings: 晚 wǎn (3rd tone, 仄), 风 fēng (1st, 平), 挺 tǐng (3rd, 仄)
    first = data["first_chars"]
    assert (first[0]["pinyin"], first[0]["tone"]) == ("wǎn", "ze")
    assert (first[1]["pinyin"], first[1]["tone"]) == ("fēng", "ping")
    assert (first[6]["pinyin"], first[6]["tone"]) == ("tǐng", "ze")


def test_reverse_default_n_and_stripping(client, bot):
    r = client.post("/api/couplet", json={"first": "  清泉石上流 ", "reverse": True})
    assert r.status_code == 200
    data = r.json()
    direct = bot.answer("清泉石上流", reverse=True)
    assert data["first"] == "清泉石上流"
    assert data["second"] == direct.second
    assert len(data["alternatives"]) == len(direct.alternatives) == 5  # n defaults to 5
    forward = client.post("/api/couplet", json={"first": "清泉石上流"}).json()
    assert forward["second"] == bot.answer("清泉石上流").second


def test_punctuation_has_no_pinyin_and_no_tone(client):
    data = client.post("/api/couplet", json={"first": "春风，秋月", "n": 1}).json()
    comma = data["first_chars"][2]
    assert comma == {"char": "，", "pinyin": "", "tone": None}
    assert data["second"][2] == "，"


# ---- bad input: 422 with one readable sentence ----

def check_line_message(text) -> str:
    with pytest.raises(BadInputError) as err:
        check_line(text)
    return str(err.value)


BAD_BODIES = [
    # (what, body, content type, words the sentence must hold)
    ("empty string", as_json({"first": ""}), None, ["empty"]),
    ("65 characters", as_json({"first": "晚" * 65}), None, ["65", "64"]),
    ("a number", as_json({"first": 5}), None, ["string", "number"]),
    ("null", as_json({"first": None}), None, ["string", "null"]),
    ("a list", as_json({"first": ["晚"]}), None, ["string", "list"]),
    ("cut-off JSON", b'{"first": "', None, ["not valid JSON"]),
    ("not UTF-8", b'{"first": "\xff\xfe"}', None, ["not valid JSON", "UTF-8"]),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, None, ["not valid JSON", "nested"]),
    ("no body", b"", None, ["empty"]),
    ("a JSON list", b"[1, 2]", None, ["JSON object", "list"]),
    ("no first", as_json({"n": 3}), None, ['"first"']),
    ("n = 0", as_json({"first": "春风", "n": 0}), None, ['"n"', "1 to 10", "got 0"]),
    ("n = 11", as_json({"first": "春风", "n": 11}), None, ['"n"', "1 to 10", "got 11"]),
    ("n = 1.5", as_json({"first": "春风", "n": 1.5}), None, ['"n"', "got 1.5"]),
    ("n a string", as_json({"first": "春风", "n": "3"}), None, ['"n"', "string"]),
    ("n true", as_json({"first": "春风", "n": True}), None, ['"n"', "got true."]),
    ("reverse 1", as_json({"first": "春风", "reverse": 1}), None, ['"reverse"', "a number"]),
    ("reverse a string", as_json({"first": "春风", "reverse": "maybe"}), None, ['"reverse"']),
    ("lone surrogate", b'{"first": "\\ud800\xe6\x98\xa5"}', None, ["broken character"]),
    ("form content type", as_json({"first": "春风"}), "application/x-www-form-urlencoded",
     ["Content-Type: application/json"]),
]


@pytest.mark.parametrize(("what", "body", "content_type", "words"), BAD_BODIES,
                         ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_422_with_one_sentence(client, what, body, content_type, words):
    r = post(client, body, content_type or "application/json")
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 300
    for word in words:
        assert word in detail, (what, detail)


@pytest.mark.parametrize("first", ["   ", "\t\n ", "abc", "123 !?", "ＡＢＣ。"])
def test_line_rules_come_from_check_line(client, first):
    """Whitespace only and no Chinese character: the sentence is check_line's own."""
    r = client.post("/api/couplet", json={"first": first})
    assert r.status_code == 422
    assert r.json()["detail"] == check_line_message(first)


def test_n_may_be_written_as_a_whole_float(client):
    r = client.post("/api/couplet", json={"first": "春风", "n": 3.0})
    assert r.status_code == 200 and len(r.json()["alternatives"]) == 3


def test_a_line_of_64_characters_is_answered(client):
    r = client.post("/api/couplet", json={"first": "春" * 32 + "风" * 32, "n": 1})
    assert r.status_code == 200 and len(r.json()["second"]) == 64


# ---- the 16 KB body limit ----

def test_body_over_16_kb_is_a_413_and_16_kb_is_not(client):
    big = as_json({"first": "春风", "pad": "x" * MAX_BODY})
    r = post(client, big)
    assert r.status_code == 413 and "16 KB" in r.json()["detail"]
    exact = as_json({"first": "春风", "n": 1})
    exact = exact[:-1] + b" " * (MAX_BODY - len(exact)) + b"}"
    assert len(exact) == MAX_BODY
    assert post(client, exact).status_code == 200


def asgi_call(app, headers: list[tuple[bytes, bytes]], chunks) -> tuple[int, int]:
    """Send one POST straight to the ASGI app; return (status, how many body chunks it read)."""
    reads, status = 0, []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/couplet", "raw_path": b"/api/couplet",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    asyncio.run(app(scope, receive, send))
    return status[0], reads


def endless(chunk: bytes):
    while True:
        yield chunk


def test_413_reads_no_byte_of_a_declared_large_body():
    app = create_app(CountingBot(None))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1000000000")]
    assert asgi_call(app, headers, endless(b"x" * 4096)) == (413, 0)


def test_413_stops_reading_a_streamed_body_at_the_limit():
    app = create_app(CountingBot(None))
    status, reads = asgi_call(app, [(b"content-type", b"application/json")],
                              endless(b" " * 4096))
    assert status == 413
    assert reads == MAX_BODY // 4096 + 1  # 5 chunks of 4 KB pass 16 KB; no more are read


# ---- micro-batching ----

async def concurrent_posts(app, bodies: list[dict]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/api/couplet", json=b) for b in bodies))


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(bot):
    counting = CountingBot(bot, delay=0.05)
    lines = LINES * 3  # 24 requests, lines of 2 to 7 characters
    responses = asyncio.run(concurrent_posts(create_app(counting),
                                             [{"first": f} for f in lines]))
    assert [r.status_code for r in responses] == [200] * len(lines)
    for line, r in zip(lines, responses, strict=True):
        assert r.json()["first"] == line
        assert r.json()["second"] == bot.answer(line).second, line
    assert counting.batches[0] == [EXAMPLE]  # the warm-up at startup
    sizes = [len(b) for b in counting.batches[1:]]
    assert sum(sizes) == len(lines)
    assert len(sizes) < len(lines) and max(sizes) > 1


def test_a_batch_holds_at_most_32_and_groups_by_n(bot):
    counting = CountingBot(bot, delay=0.02)
    bodies = [{"first": LINES[i % len(LINES)], "n": 1 + i % 2} for i in range(80)]
    responses = asyncio.run(concurrent_posts(create_app(counting), bodies))
    for body, r in zip(bodies, responses, strict=True):
        assert r.status_code == 200 and len(r.json()["alternatives"]) == body["n"]
    sizes = [len(b) for b in counting.batches[1:]]
    assert sum(sizes) == 80 and max(sizes) <= 32 and len(sizes) < 80


@pytest.mark.parametrize(("error", "status"), [(BadInputError, 422), (RuntimeError, 500)])
def test_a_failing_line_fails_only_its_own_request(bot, error, status):
    counting = CountingBot(bot, delay=0.02, bad="坏", error=error)
    bodies = [{"first": f} for f in ["春风", "坏天气", "明月", "清泉"]]
    responses = asyncio.run(concurrent_posts(create_app(counting), bodies))
    assert [r.status_code for r in responses] == [200, status, 200, 200]
    assert isinstance(responses[1].json()["detail"], str)
    assert responses[2].json()["second"] == bot.answer("明月").second


def test_startup_freezes_what_is_loaded_out_of_the_garbage_collectors_walks(bot):
    """The loaded bot's objects go to the collector's permanent generation: full collections
    over them were the p99 tail of the load benchmark (236 ms, 88 ms without)."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(bot)) as c:
        assert gc.get_freeze_count() > 0
        assert c.post("/api/couplet", json={"first": "春风"}).status_code == 200
    gc.unfreeze()


def test_the_server_keeps_answering_after_a_crash(bot):
    counting = CountingBot(bot, bad="坏", error=ZeroDivisionError)
    with TestClient(create_app(counting), raise_server_exceptions=False) as c:
        crashed = c.post("/api/couplet", json={"first": "坏"})
        assert crashed.status_code == 500 and "ZeroDivisionError" in crashed.json()["detail"]
        assert c.post("/api/couplet", json={"first": "春风"}).status_code == 200


# ---- the page and the docs ----

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
                      r"""@import|fetch\(\s*["'](?:https?:)?//""", re.IGNORECASE)


def test_the_page_and_its_files_are_served_and_load_nothing_from_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for needle in ['id="first"', 'id="go"', 'id="answer"', 'id="alternatives"',
                   'src="/static/app.js"', 'href="/static/style.css"', 'name="viewport"']:
        assert needle in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert EXTERNAL.search('<script src="https://cdn.example/x.js">')  # it catches a CDN
    assert EXTERNAL.search("@font-face { src: url(//fonts.example/a.woff2) }")
    for path in STATIC.iterdir():
        assert not EXTERNAL.search(path.read_text(encoding="utf-8")), path.name


def test_openapi_documents_the_request_and_the_error_shape(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/couplet"]["post"]
    assert set(op["responses"]) == {"200", "413", "422"}
    problem = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert problem.endswith("/Problem")
    fields = spec["components"]["schemas"]["CoupletRequest"]["properties"]
    assert (fields["first"]["minLength"], fields["first"]["maxLength"]) == (1, 64)
    assert (fields["n"]["minimum"], fields["n"]["maximum"], fields["n"]["default"]) == (1, 10, 5)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_load_their_scripts_from_the_app_not_a_cdn(client, path):
    page = client.get(path)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert not EXTERNAL.search(page.text)
    scripts = re.findall(r"""(?:src|href)=["'](/[^"']+\.(?:js|css))["']""", page.text)
    assert scripts and any(s.endswith(".js") for s in scripts)
    for script in scripts:
        got = client.get(script)
        assert got.status_code == 200 and len(got.content) > 10_000, script


# ---- genshop serve ----

@pytest.mark.parametrize("port", ["70000", "0", "-5"])
def test_serve_rejects_a_port_out_of_range_in_one_line(capsys, port):
    assert main(["serve", "--port", port]) == 2
    err = capsys.readouterr().err
    assert f"between 1 and 65535, got {port}" in err and err.count("\n") == 1


def test_serve_rejects_a_port_that_is_no_number_in_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--port", "http"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "invalid int value: 'http'" in err
    assert err.count("\n") == 1


def test_serve_refuses_a_port_in_use():
    holder = bind("127.0.0.1", free_port())
    port = holder.getsockname()[1]
    try:
        with pytest.raises(BadInputError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    finally:
        holder.close()
    bind("127.0.0.1", port).close()  # free again: now it binds


def test_serve_binds_then_runs_uvicorn_on_the_loaded_bot(monkeypatch, capsys, bot):
    import uvicorn

    import genshop.couplet.bot

    ran = {}
    monkeypatch.setattr(genshop.couplet.bot, "load_pretrained", lambda: bot)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: ran.update(
        server=self, sockets=sockets))
    port = free_port()
    assert main(["serve", "--port", str(port)]) == 0
    (sock,) = ran["sockets"]
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
        with TestClient(ran["server"].config.app) as c:
            answer = c.post("/api/couplet", json={"first": "春风"}).json()
        assert answer["second"] == bot.answer("春风").second
    finally:
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- fuzzing from the OpenAPI schema ----

FUZZ_CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_schema_conformance", "negative_data_rejection",
               "positive_data_acceptance"]


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_fuzz_the_api_from_its_schema(bot, mode):
    """Bodies that fit the schema and bodies that break it: never a 5xx; each response has a
    documented status, content type and shape; invalid data is refused, valid data answered."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(bot))
    operation = schema["/api/couplet"]["POST"]
    checks = [getattr(schemathesis.checks, name) for name in FUZZ_CHECKS]
    seen = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        seen.append(case.call_and_validate(checks=checks).status_code)

    fuzz()
    assert len(seen) >= 100
    assert set(seen) <= {200, 422}
    assert (200 in seen) == mode.is_positive  # the bodies were really of the kind asked for
