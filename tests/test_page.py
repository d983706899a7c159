"""The search page's serving rules, without a browser (test_page_browser.py drives Chromium):
open without the API key, only its own files, nothing from elsewhere, shipped in the package."""

import fnmatch
import re

import pytest
from conftest import REPO
from fastapi.testclient import TestClient

from server import ServerSettings, create_app
from server.page import STATIC_DIR

STATIC_FILES = sorted(p for p in STATIC_DIR.iterdir() if p.is_file())


@pytest.fixture(scope="module")
def client():
    # no `with`: the lifespan (model, index) never runs; the page needs neither
    return TestClient(create_app(ServerSettings(api_key="k3y")))


def test_page_and_its_files_need_no_key_but_the_api_does(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assert sorted(assets) == ["static/page.css", "static/page.js"]
    types = {"static/page.css": "text/css", "static/page.js": "text/javascript"}
    for asset in assets:
        response = client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(types[asset])
    assert client.get("/stats").status_code == 401
    assert client.post("/search", json={"query": "x"}).status_code == 401


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/index.html",
                                  "/static/%2e%2e/app.py", "/static/..%2fpage.py",
                                  "/static/%2e%2e/stats", "/static/"])
def test_static_serves_only_its_own_files_and_opens_nothing_else(client, path):
    response = client.get(path)
    assert response.status_code in (401, 404), (path, response.status_code)


def test_page_is_in_the_openapi_schema_and_its_files_are_not(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/"]
    assert not [p for p in paths if p.startswith("/static")]


def test_page_fetches_nothing_from_elsewhere_and_never_parses_text_as_html():
    for path in STATIC_FILES:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?:|//[a-z0-9]", text.replace("http-equiv", ""),
                             flags=re.I), f"{path.name} names an outside address"
        assert "@import" not in text and "url(" not in text, path.name
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in text, f"{path.name} uses {sink}"


def test_static_files_ship_with_the_package():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["server"]
    for path in STATIC_FILES:
        name = path.relative_to(REPO / "server").as_posix()
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} would not ship"


def test_readme_shows_a_small_screenshot_of_the_page():
    image = REPO / "docs" / "search-page.png"
    assert "](docs/search-page.png)" in (REPO / "README.md").read_text(encoding="utf-8")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size < 150_000
