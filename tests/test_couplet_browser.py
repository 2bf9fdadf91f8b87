"""The couplet page in a real browser (kexue.fm archives/6270): Debian's chromium,
driven headless by Python playwright, against the real server (uvicorn on a free 127.0.0.1 port,
the tiny untrained bot). It types a line, clicks, and reads an answer of the same length with its
alternatives, per-character pinyin and tones and rule marks; shows the server's 422 sentence;
and fits a 375-px phone screen without sideways scrolling.

Without chromium (or the playwright package) the tests are skipped with a one-line note, except
under CI (the CI environment variable set), where they fail: CI must install chromium.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from genshop.couplet.bot import tiny_bot
from genshop.couplet.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium && pip install playwright"
LINE = "晚风摇树树还挺"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing"
    return None


@pytest.fixture(scope="module")
def browser():
    why = missing_browser()
    if why is not None:
        message = f"browser test needs chromium: {why}; install with `{INSTALL}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def bot():
    return tiny_bot()


@pytest.fixture(scope="module")
def server_url(bot):
    """The real app under uvicorn in a thread, on a free loopback port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(bot), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1000, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.problems = []  # JS errors and failed loads: a finished page has none
    page.on("pageerror", lambda err: page.problems.append(str(err)))
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.goto(server_url)
    yield page
    assert page.problems == []
    context.close()


def ask(page, line: str, reverse: bool = False) -> None:
    page.fill("#first", line)
    if reverse:
        page.check("#reverse")
    page.click("#go")


def test_typing_a_line_and_clicking_gives_an_answer_of_the_same_length(page, bot):
    ask(page, LINE)
    page.wait_for_selector("#result:not([hidden])")
    answer = page.inner_text("#answer").strip()
    expected = bot.answer(LINE)
    assert len(answer) == len(LINE) and answer == expected.second
    cards = page.locator("#alternatives > li.alt")
    assert cards.count() == len(expected.alternatives) == 5
    texts = [t.strip() for t in page.locator(".alt-text").all_inner_texts()]
    assert texts == [c.text for c in expected.alternatives]
    for i, cand in enumerate(expected.alternatives):
        card = cards.nth(i)
        assert card.locator(".pos").count() == len(LINE)  # one column per position
        assert card.locator(".cell.answer .ch").all_inner_texts() == list(cand.text)
        assert card.locator(".cell.given .ch").all_inner_texts() == list(LINE)
        pinyins = card.locator(".cell.answer .py").all_inner_texts()
        assert all(p.strip() for p in pinyins)
        marks = card.locator(".check")
        assert marks.count() == 4
        for rule, ok in cand.checks.items():
            mark = card.locator(f'.check[data-rule="{rule}"]')
            assert mark.inner_text().startswith("✓" if ok else "✗")
            assert ("ok" if ok else "bad") in mark.get_attribute("class")
    tones = page.locator(".cell.given .tone").first.inner_text()
    assert tones == "仄"  # 晚 wǎn is 仄 in either tone system


def test_the_reverse_box_asks_for_a_first_line(page, bot):
    ask(page, "夜雨敲花花更香", reverse=True)
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#answer-label") == "上联"
    assert page.inner_text("#answer").strip() == bot.answer("夜雨敲花花更香", reverse=True).second


def test_bad_input_shows_the_servers_sentence_in_the_page(page):
    ask(page, "hello")
    page.wait_for_selector("#error:not([hidden])")
    assert "no Chinese character" in page.inner_text("#error")
    assert page.locator("#result").is_hidden()
    page.problems.clear()  # the 422 itself is logged by chromium as a failed load


def test_a_phone_screen_of_375_px_needs_no_sideways_scrolling(page, tmp_path):
    page.set_viewport_size({"width": 375, "height": 812})
    for line in [LINE, "春风" * 16]:  # a usual line and a long one of 32 characters
        ask(page, line)
        page.wait_for_function(f"document.querySelector('#answer').textContent.length == "
                               f"{len(line)}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width} px wide on a 375-px screen"
    ask(page, LINE)
    page.wait_for_function(f"document.querySelector('#answer').textContent.length == {len(LINE)}")
    shot = tmp_path / "couplet-375.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_api_docs_render_offline(browser, server_url):
    """Swagger UI at /docs draws the couplet operation with every file from the server."""
    context = browser.new_context()
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{server_url}/docs")
    path = page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    assert path.inner_text().strip() == "/api/couplet"
    assert requested and all(u.startswith(server_url) for u in requested), requested
    context.close()
