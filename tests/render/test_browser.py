"""The report in a real browser: headless Chromium, network off, no console errors.

Chromium is the Debian package (``/usr/bin/chromium``; scripts/install-sensor-deps.sh installs it)
driven by Playwright's Python package over the DevTools protocol; no browser is ever downloaded.
Every request that is not ``file:`` or ``data:`` is aborted and counted, so a report that tried
to reach a CDN (or an injected ``<img src=...>``) fails here. Screenshots are saved as artifacts
(``UNBACKED_ARTIFACTS`` or a pytest tmp dir) and their paths printed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.render._alerts import HOSTILE_CMD, HOSTILE_NAME, plain_alert, rich_alert
from unbacked.render.html import write_html

pytest.importorskip("bokeh", reason="the [report] extra (bokeh) is not installed")
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the Playwright Python package drives Chromium: pip install playwright",
)
CHROMIUM = os.environ.get("UNBACKED_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install chromium (or set UNBACKED_CHROMIUM)",
        allow_module_level=True,
    )

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Browser:
    page: Any
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    profile = tmp_path / "chromium-profile"  # a fresh --user-data-dir for every test
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, offline=True,
            viewport={"width": 1600, "height": 1000}, service_workers="block",
        )  # fmt: skip
        try:
            b = Browser(page=context.pages[0] if context.pages else context.new_page())

            def route(r: Any) -> None:
                if r.request.url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    b.blocked.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            b.page.on("console", lambda m: m.type == "error" and b.errors.append(m.text))
            b.page.on("pageerror", lambda e: b.errors.append(f"page error: {e}"))
            yield b
        finally:
            context.close()  # ends the Chromium this fixture started


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("UNBACKED_ARTIFACTS")
    if where:
        out = Path(where) / "report-screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path_factory.mktemp("report-screenshots")


def _shot(b: Browser, path: Path, capsys: pytest.CaptureFixture[str], *, full: bool = False):
    b.page.screenshot(path=str(path), full_page=full)
    assert path.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nreport screenshot: {path}")


def _open(b: Browser, report: Path) -> None:
    b.page.goto(report.resolve().as_uri())
    b.page.wait_for_selector("section.alert.shown .plot canvas", timeout=20_000)


#: canvas coordinates of the first plotted event of a kind, from bokeh's own scales
_POINT_OF = """kind => {
  const view = Object.values(Bokeh.index)[0];
  const fig = Bokeh.documents[0].roots()[0];
  const src = fig.renderers.find(r => r.data_source && r.data_source.data.summary).data_source;
  const i = src.data.kind.indexOf(kind);
  return {x: view.frame.x_scale.compute(src.data.t[i]), y: view.frame.y_scale.compute(kind)};
}"""


def _plotted(b: Browser) -> dict[str, Any]:
    """What the page's one plot shows now: lanes (top first), number of events, title."""
    return b.page.evaluate(
        """() => { const d = Bokeh.documents[0];
          return {lanes: d.get_model_by_name("lanes").factors.slice().reverse(),
                  events: d.get_model_by_name("events").data.t.length,
                  title: d.get_model_by_name("timeline").title.text.split(":")[0]}; }"""
    )


def _x_ranges(b: Browser) -> list[float]:
    return b.page.evaluate(
        "() => Bokeh.documents.map(d => { const r = d.roots()[0].x_range;"
        " return r.end - r.start; })"
    )


def test_report_renders_offline(browser: Browser, tmp_path, artifacts, capsys):
    report = write_html([plain_alert(1), rich_alert(), plain_alert(2)], tmp_path / "r.html")
    b = browser
    _open(b, report)
    page = b.page

    # the alert list, most severe first, the first alert open
    rows = page.locator("#alert-list tbody tr")
    assert rows.count() == 3
    assert "sel" in (rows.nth(0).get_attribute("class") or "")
    shown = page.locator("section.alert.shown")
    assert shown.count() == 1 and shown.get_attribute("id") == "a0"

    # process tree: parent chain, injector, injected process, child, with telemetry as text
    tree = shown.locator(".tree")
    assert tree.is_visible()
    assert tree.locator(".pnode").count() == 5
    text = tree.inner_text()
    assert HOSTILE_NAME in text and "window.__pwned=1" in text and "cmd.exe /c whoami" in text
    assert HOSTILE_CMD.split("&")[0].strip() in text.replace("\n", "")
    assert tree.locator("b").count() == 0  # the <b> in the name stayed text

    # explanation: one row per reason, the baseline as a sentence
    explain = shown.locator("table.explain tbody tr")
    assert explain.count() == 3
    assert "0 of 18,422 like this" in shown.locator("table.explain").inner_text()

    # timeline: a drawn bokeh canvas and the provenance of every line
    assert shown.locator(".plot canvas").first.is_visible()
    assert shown.locator("table.timeline tbody tr").count() == 7
    assert "record 103" in shown.locator("table.timeline").inner_text()
    assert shown.locator(".hdr-bad").inner_text() == "PE"

    _shot(b, artifacts / "report-synthetic.png", capsys, full=True)

    # hovering the "write" event shows its hostile summary as text in bokeh's tooltip
    shown.locator(".plot").scroll_into_view_if_needed()
    box = shown.locator(".plot canvas").first.bounding_box()
    assert box is not None
    point = page.evaluate(_POINT_OF, "write")
    page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    tip = page.get_by_text("window.__pwned=4", exact=False)
    tip.first.wait_for(state="visible", timeout=5_000)
    assert "</script><script>window.__pwned=4</script>" in tip.first.inner_text()
    assert "record 103" in page.get_by_text("Sysmon%4Operational.evtx (record 103)").inner_text()

    # the plot zooms (wheel over it narrows the time range)
    before = _x_ranges(b)[0]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(300)
    assert _x_ranges(b)[0] < before

    # sorting by time: newest first, then oldest first
    page.click("th[data-key=time]")
    assert rows.nth(0).get_attribute("data-idx") == "0"
    page.click("th[data-key=time]")
    assert rows.nth(0).locator("td").nth(2).inner_text() == "host-2"
    page.click("th[data-key=host]")
    assert rows.nth(0).locator("td").nth(2).inner_text().startswith("WS-0042")

    # choosing another alert shows it and swaps its events into the plot; j/k move the selection
    rows.nth(1).click()
    assert page.locator("section.alert.shown").count() == 1
    idx = rows.nth(1).get_attribute("data-idx")
    page.wait_for_selector(f"#plot-{idx} canvas")
    assert _plotted(b) == {"lanes": ["thread"], "events": 1, "title": "notepad.exe (902) on host-2"}
    page.keyboard.press("k")
    assert page.locator("section.alert.shown").get_attribute("id") == "a0"
    rows.nth(2).focus()  # keyboard users: Tab to a row, Enter opens it
    page.keyboard.press("Enter")
    assert page.locator("section.alert.shown").get_attribute("data-idx") == rows.nth(
        2
    ).get_attribute("data-idx")
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.wait_for_selector("#plot-0 canvas")
    assert _plotted(b)["events"] == 7

    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert b.blocked == [], b.blocked
    assert b.errors == [], b.errors


@pytest.mark.shared_data
@pytest.mark.slow
def test_report_of_real_alerts(browser: Browser, shared_data, tmp_path, artifacts, capsys):
    from unbacked.engine.local import hunt

    alerts = hunt([shared_data / "windows"]).alerts
    assert alerts, "the shared data has known injections"
    report = write_html(alerts, tmp_path / "real.html")
    _open(browser, report)
    page = browser.page
    assert page.locator("#alert-list tbody tr").count() == len(alerts)
    shown = page.locator("section.alert.shown")
    for part in (".tree .pnode", "table.explain", ".plot canvas", "table.timeline"):
        assert shown.locator(part).first.is_visible(), part
    _shot(browser, artifacts / "report-shared-data.png", capsys)
    # every alert opens and its own events are plotted
    from unbacked.model.alert import sort_alerts
    from unbacked.render.html import plot_data

    for i, a in enumerate(sort_alerts(alerts)):
        page.locator(f'#alert-list tr[data-idx="{i}"]').click()
        page.wait_for_selector(f"#plot-{i} canvas")
        assert _plotted(browser)["events"] == len(plot_data(a)["events"]["t"]), i
    assert browser.blocked == [], browser.blocked
    assert browser.errors == [], browser.errors
