"""The search page in a real Chromium against a real `bertsearch serve` on 127.0.0.1.

Chromium is the system's (Debian's `chromium`, or $BERTSEARCH_CHROMIUM) driven by Playwright;
nothing is downloaded. Without either, every test here skips with the reason. Screenshots at
desktop and phone width go to $BERTSEARCH_SCREENSHOTS (else a pytest temporary folder) and
the folder is printed.

One server for the module, started before its index exists: the first test sees the 503,
then the index (built beforehand) is moved into place and the server opens it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import REPO

KEY = "s3cret-key"
KEY_STORE = "bertsearch.apiKey"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
EXTRA_DOCS = {  # beside a copy of samples/docs
    "notes/crabs.txt": "🦀🦀 Hermit crabs scuttle between the rocks at dusk.\n\n"
                       "A crab that scuttles sideways 🦀 keeps its eyes on the gulls.",
    "notes/markup.txt": 'Raw markup stays text: <img src=x onerror="window.__xss=1"> and '
                        "<script>window.__xss=2</script> must show exactly as written.",
    "notes/empty.md": "",
}


def find_chromium() -> str | None:
    """$BERTSEARCH_CHROMIUM, else `chromium` or `chromium-browser` on the PATH."""
    named = os.environ.get("BERTSEARCH_CHROMIUM")
    candidates = [named] if named else [shutil.which(n) for n in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install -e '.[test]'")
    executable = find_chromium()
    if executable is None:
        named = os.environ.get("BERTSEARCH_CHROMIUM")
        pytest.skip(f"BERTSEARCH_CHROMIUM={named} is not an executable" if named else
                    "no Chromium found: apt-get install chromium (or set BERTSEARCH_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        # launch() gives the browser a new, empty profile folder of its own
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Site:
    base: str
    built: Path  # the index, built before the server started
    index: Path  # where the server looks for it
    docs: Path

    @property
    def indexed(self) -> bool:
        return self.index.exists()

    def ensure_index(self) -> None:
        if not self.indexed:
            os.replace(self.built, self.index)

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.base + path, timeout=120,
                             headers={"Authorization": f"Bearer {KEY}"}, **kwargs)

    def search(self, **body) -> dict:
        response = self.api("POST", "/search", json={"coherence": True, **body})
        assert response.status_code == 200, response.text
        return response.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def site(browser, tmp_path_factory, sample_docs):
    root = tmp_path_factory.mktemp("page")
    docs = shutil.copytree(sample_docs, root / "docs")
    for name, text in EXTRA_DOCS.items():
        (docs / name).parent.mkdir(exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    (docs / "notes" / "blob.txt").write_bytes(b"\x00\x01binary\x00")
    built = root / "built"
    result = cli("index", docs, "--index", built)
    assert result.returncode == 0, result.stderr
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--index", str(root / "idx"), "--port",
         str(port), "--api-key", KEY, "--log-level", "warning"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    site = Site(f"http://127.0.0.1:{port}", built, root / "idx", docs)
    try:
        wait_until_loaded(site, proc)
        yield site
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until_loaded(site: Site, proc: subprocess.Popen) -> None:
    """Until /health says the model is loaded (503 'degraded' while there is no index)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            if httpx.get(f"{site.base}/health", timeout=2).json().get("model"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.3)
    raise TimeoutError("bertsearch serve did not load in 180 s")


@dataclass
class Tab:
    """A browser page with what it requested and any uncaught script error."""

    page: object
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def open_tab(browser, site: Site, *, key: str | None = KEY, viewport=DESKTOP) -> Tab:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(90_000)
    if key:  # as if the key had been given once in this tab
        context.add_init_script(f"sessionStorage.setItem({KEY_STORE!r}, {json.dumps(key)})")
    tab = Tab(context.new_page())
    tab.page.on("request", lambda request: tab.requests.append(request.url))
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    return tab


def close_tab(tab: Tab, site: Site) -> None:
    tab.page.context.close()
    outside = [url for url in tab.requests
               if not url.startswith(site.base + "/") and not url.startswith("data:")]
    assert not outside, f"the page requested addresses outside the server: {outside}"
    assert not tab.errors, f"uncaught script errors: {tab.errors}"


@pytest.fixture
def tab(browser, site):
    site.ensure_index()
    tab = open_tab(browser, site)
    yield tab
    close_tab(tab, site)


@pytest.fixture
def keyless_tab(browser, site):
    site.ensure_index()
    tab = open_tab(browser, site, key=None)
    yield tab
    close_tab(tab, site)


def searches_done(page) -> int:
    return int(page.get_attribute("#results", "data-done") or 0)


def wait_for_searches(page, n: int) -> None:
    """Until the page has finished its n-th search (a selector: the page's CSP forbids the
    string evaluation `wait_for_function` polls with)."""
    page.wait_for_selector(f'#results[data-done="{n}"]', state="attached")


def submit(page, **fields) -> None:
    """Fill the form (q, mode, k, path, meta), press Enter in the box, wait for the answer."""
    done = searches_done(page)
    for name, value in fields.items():
        if name == "mode":
            page.select_option("#mode", value)
        else:
            page.fill(f"#{name}", str(value))
    page.press("#q", "Enter")
    wait_for_searches(page, done + 1)


def shown_hits(page) -> list[dict]:
    """What the page shows of each hit, in the order shown."""
    return page.eval_on_selector_all("#hits .hit", """items => items.map(li => ({
        index: Number(li.dataset.index),
        file: li.querySelector('.file').textContent,
        lines: li.querySelector('.lines').textContent,
        score: li.querySelector('.score').textContent,
        text: li.querySelector('.passage').textContent,
        marks: [...li.querySelectorAll('.passage mark')].map(m => m.textContent)}))""")


def error_text(page) -> str:
    page.wait_for_selector("#error:not([hidden])")
    return page.text_content("#error")


def code_points(text: str, spans) -> list[str]:
    return [text[start:end] for start, end in spans]


# ---- the tests, in the order they run (the first needs the index still absent) ----------


def test_before_the_index_exists_a_search_shows_the_503(browser, site):
    if site.indexed:
        pytest.skip("the index is already in place; this test runs first in the module")
    tab = open_tab(browser, site)
    try:
        tab.page.goto(f"{site.base}/?q=knife")
        wait_for_searches(tab.page, 1)
        message = error_text(tab.page)
        assert "The index is not ready" in message and "No index at" in message
        assert tab.page.locator("#hits .hit").count() == 0
        tab.page.wait_for_selector("text=None yet: run bertsearch index")
    finally:
        close_tab(tab, site)


def test_wrong_key_shows_the_error_and_the_right_key_is_kept_for_the_tab(keyless_tab, site):
    page = keyless_tab.page
    page.goto(f"{site.base}/?q=sharpen+a+knife")
    page.wait_for_selector("#key-form:not([hidden])")
    assert page.is_hidden("#error")  # a missing key: the form asks, nothing is wrong yet

    page.fill("#api-key", "not-the-key")
    page.press("#api-key", "Enter")
    wait_for_searches(page, 2)
    assert "Missing or wrong API key" in error_text(page)
    assert "not accepted" in page.text_content("#key-message")
    assert page.evaluate(f"sessionStorage.getItem({KEY_STORE!r})") is None

    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    wait_for_searches(page, 3)
    assert page.is_hidden("#error") and page.is_hidden("#key-form")
    assert shown_hits(page)[0]["file"] == site.search(query="sharpen a knife")["hits"][0]["path"]
    assert page.evaluate(f"sessionStorage.getItem({KEY_STORE!r})") == KEY
    assert page.evaluate("localStorage.length") == 0 and not page.context.cookies()

    page.reload()  # the same tab keeps it: no second prompt
    wait_for_searches(page, 1)
    assert page.is_hidden("#key-form") and shown_hits(page)
    page.click("#forget-key")
    assert page.evaluate(f"sessionStorage.getItem({KEY_STORE!r})") is None


def test_a_query_shows_hits_with_path_lines_score_and_highlights(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    submit(page, q="how do I sharpen a knife?")
    expected = site.search(query="how do I sharpen a knife?")["hits"]
    shown = shown_hits(page)
    assert [h["index"] for h in shown] == list(range(len(expected)))
    assert expected[0]["path"] == "kitchen/knife-care.html"
    for hit, want in zip(shown, expected, strict=True):
        assert hit["file"] == want["path"]
        first, last = want["line_start"], want["line_end"]
        assert hit["lines"] == (f"L{first}" if first == last else f"L{first}–{last}")
        assert float(hit["score"]) == pytest.approx(want["score"], rel=1e-2)
        assert hit["text"].split() == want["text"].split()  # reflowed, not changed
        assert hit["marks"] == code_points(want["text"], want["highlights"])
    marks = [m.lower() for m in shown[0]["marks"]]
    assert "knife" in marks and "sharpen" in marks
    assert all(m.lower().startswith(("sharpen", "knife")) for h in shown for m in h["marks"])
    assert parse_qs(urlsplit(page.url).query)["q"] == ["how do I sharpen a knife?"]


def test_highlights_count_code_points_like_python(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    submit(page, q="scuttle", mode="keyword")
    shown = shown_hits(page)
    assert [h["file"] for h in shown] == ["notes/crabs.txt"]
    assert shown[0]["marks"] == ["scuttle", "scuttles"]  # emoji before them: 2 UTF-16 units


def test_passages_are_shown_as_text_never_as_html(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    submit(page, q="onerror markup", mode="keyword")
    shown = shown_hits(page)
    assert shown[0]["file"] == "notes/markup.txt"
    assert '<img src=x onerror="window.__xss=1">' in shown[0]["text"]
    assert "<script>window.__xss=2</script>" in shown[0]["text"]
    assert page.locator("#hits img, #hits script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_filters_narrow_the_hits(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    query = "bread dough knife bicycle"
    submit(page, q=query, k=20)
    everything = {h["file"] for h in shown_hits(page)}
    assert {"kitchen/knife-care.html", "bicycle-maintenance.txt"} <= everything

    submit(page, path="kitchen/*")
    kitchen = [h["file"] for h in shown_hits(page)]
    expected = site.search(query=query, k=20, filter={"path": {"$glob": "kitchen/*"}})
    assert kitchen == [h["path"] for h in expected["hits"]]
    assert set(kitchen) == {"kitchen/knife-care.html", "kitchen/sourdough.rst"}
    assert parse_qs(urlsplit(page.url).query)["path"] == ["kitchen/*"]

    submit(page, meta="ext=.rst")
    assert {h["file"] for h in shown_hits(page)} == {"kitchen/sourdough.rst"}
    submit(page, path="", meta='{"ext": {"$in": [".html", ".txt"]}, "size": {"$lt": 800}}')
    small = {h["file"] for h in shown_hits(page)}
    assert "kitchen/knife-care.html" in small and small < everything
    assert all(p.endswith((".html", ".txt")) for p in small)


def test_a_bad_filter_shows_the_servers_detail(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    submit(page, q="knife")
    bad = '{"year": {"$bogus": 1}}'
    answer = site.api("POST", "/search", json={"query": "knife", "filter": json.loads(bad)})
    assert answer.status_code == 422
    submit(page, meta=bad)
    message = error_text(page)
    assert "The search was not accepted" in message and answer.json()["detail"] in message
    assert page.locator("#hits .hit").count() > 0  # the last results stay

    submit(page, meta='{"year": ')
    assert "not valid JSON" in error_text(page)
    submit(page, meta="year")
    assert "is not KEY=VALUE" in error_text(page)


def test_the_coherence_strip_marks_the_weakest_link_and_reading_order_reorders(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    query = "how does BERT learn from sentence pairs?"
    submit(page, q=query, k=5)
    expected = site.search(query=query, k=5)
    chain, order = expected["coherence"], expected["reading_order"]

    def strip():
        return page.eval_on_selector_all("#strip .segment", """segments => segments.map(s => ({
            p: Number(s.style.getPropertyValue('--p')),
            weakest: s.classList.contains('weakest')}))""")

    segments = strip()
    assert len(segments) == len(expected["hits"]) - 1 == 4
    assert [s["p"] for s in segments] == pytest.approx(chain["pair_scores"], abs=1e-6)
    assert [i for i, s in enumerate(segments) if s["weakest"]] == [chain["weakest_link"]]
    links = page.locator("#hits .link")
    assert links.count() == 4
    assert page.locator("#hits .link.weakest").get_attribute("data-pair") == str(
        chain["weakest_link"])

    page.click("#reading-order")
    assert page.get_attribute("#reading-order", "aria-pressed") == "true"
    assert [h["index"] for h in shown_hits(page)] == order["order"]
    assert [s["p"] for s in strip()] == pytest.approx(order["pair_scores"], abs=1e-6)
    weakest = min(range(len(order["pair_scores"])), key=order["pair_scores"].__getitem__)
    assert [i for i, s in enumerate(strip()) if s["weakest"]] == [weakest]
    assert parse_qs(urlsplit(page.url).query)["order"] == ["reading"]

    page.click("#reading-order")
    assert [h["index"] for h in shown_hits(page)] == list(range(5))


def test_the_url_holds_the_search_and_back_goes_back(tab, site):
    page = tab.page
    page.goto(f"{site.base}/?q=tide+pools&mode=keyword&k=3&path=*.md")
    wait_for_searches(page, 1)
    assert page.input_value("#q") == "tide pools"
    assert page.input_value("#mode") == "keyword"
    assert page.input_value("#k") == "3" and page.input_value("#path") == "*.md"
    shown = shown_hits(page)
    assert shown and len(shown) <= 3 and all(h["file"].endswith(".md") for h in shown)
    assert shown[0]["file"] == "tide-pools.md"
    assert "keyword" in page.text_content("#summary")

    submit(page, q="sourdough starter", path="")
    assert shown_hits(page)[0]["file"] == "kitchen/sourdough.rst"
    done = searches_done(page)
    page.go_back()
    wait_for_searches(page, done + 1)
    assert page.input_value("#q") == "tide pools"
    assert shown_hits(page)[0]["file"] == "tide-pools.md"


def test_slash_focuses_the_box_and_enter_searches(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    page.click(".hint")  # focus away from the box
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    assert page.input_value("#q") == ""  # the slash only focused the box
    done = searches_done(page)
    page.keyboard.type("whetstone")
    page.keyboard.press("Enter")
    wait_for_searches(page, done + 1)
    assert shown_hits(page)[0]["file"] == "kitchen/knife-care.html"
    page.click("#path")
    page.keyboard.type("api/*.md")  # a slash typed in a field stays in it
    assert page.input_value("#path") == "api/*.md"


def test_the_overview_shows_counts_model_backend_last_sync_and_skipped_files(tab, site):
    page = tab.page
    page.goto(site.base + "/")
    page.wait_for_selector("#overview dd[data-field=documents]")
    stats = site.api("GET", "/stats").json()
    index = stats["index"]

    def field_text(name):
        return page.text_content(f"#overview dd[data-field='{name}']")

    assert field_text("documents") == str(index["documents"]) == "8"
    assert field_text("passages") == str(index["passages"])
    assert stats["model"] in field_text("model")
    assert field_text("backend") == index["backend"] == "torch"
    when = page.evaluate(f"new Date({index['last_sync']} * 1000).toLocaleString()")
    assert field_text("last sync").startswith(when)
    skipped = page.eval_on_selector_all("#skipped li", "items => items.map(i => i.textContent)")
    expected = [f"{s['path']} — {s['reason']}" for sync in index["syncs"].values()
                for s in sync["skipped"]]
    assert skipped == expected
    assert {"notes/empty.md", "notes/blob.txt"} <= {s.split(" — ")[0] for s in skipped}


@pytest.mark.parametrize("name, viewport", [("desktop", DESKTOP), ("phone", PHONE)])
def test_screenshots_at_desktop_and_phone_width(browser, site, name, viewport, capsys,
                                                tmp_path_factory):
    site.ensure_index()
    folder = Path(os.environ.get("BERTSEARCH_SCREENSHOTS") or
                  tmp_path_factory.getbasetemp() / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    tab = open_tab(browser, site, viewport=viewport)
    try:
        page = tab.page
        page.goto(f"{site.base}/?q=how+do+I+sharpen+a+knife%3F&k=4")
        wait_for_searches(page, 1)
        page.wait_for_selector("#overview dd[data-field=documents]", state="attached")
        assert page.is_visible("#strip") and len(shown_hits(page)) == 4
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"the page scrolls sideways at {viewport['width']}px"
        size = page.eval_on_selector(".passage", "p => parseFloat(getComputedStyle(p).fontSize)")
        assert size >= 14
        page.screenshot(path=folder / f"search-page-{name}.png", full_page=True)
    finally:
        close_tab(tab, site)
    with capsys.disabled():
        print(f"\nscreenshot: {folder / f'search-page-{name}.png'}")


@pytest.mark.parametrize("path, marker", [("/docs", ".swagger-ui .title"),
                                          ("/redoc", "redoc-wrap, .redoc-wrap, h1")])
def test_the_api_docs_work_offline(browser, site, path, marker):
    """Issue 20: /docs and /redoc render from files this server ships (no CDN, no fonts
    from elsewhere), so they work on a machine with no internet."""
    tab = open_tab(browser, site, key=None)
    blocked = []

    def refuse_outside(route):
        if route.request.url.startswith(site.base):
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    tab.page.route("**/*", refuse_outside)
    tab.page.goto(site.base + path)
    tab.page.wait_for_selector(marker, timeout=60_000)
    assert "bertsearch" in tab.page.content()
    assert not blocked, f"{path} asked for addresses outside the server: {blocked}"
    close_tab(tab, site)
