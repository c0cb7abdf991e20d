"""report.html of a real tiny evaluate run, read as a parser and as a browser sees it.

The page is checked against per_case.csv (worst Dice first, the K worst cases pictured per
setting), its links and images by an HTML parser and PIL, and in headless Chromium (Debian's
package; skipped without it): it loads with no console message, a click on a header sorts the
table (read back from the DOM dump), and every link and image resolves in the browser.
"""

import base64
import csv
import html
import html.parser
import io
import json
import math
import re
import shutil
import subprocess

import pytest
from PIL import Image

from tests.test_cli import _run
from unetjax.evaluation import case_pictures, per_case, report_html

KEEP = 2
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    """(output folder of `evaluate --split test`, its per_case.csv rows)."""
    workdir, _, env = trained
    out = tmp_path_factory.mktemp("report") / "eval"
    _run(
        ["evaluate.py", "--model", str(workdir), "--split", "test", "--repeats", "1",
         "--report-cases", str(KEEP), "--output", str(out)],
        env,
    )  # fmt: skip
    with open(out / "per_case.csv", newline="") as f:
        return out, list(csv.DictReader(f))


class _Page(html.parser.HTMLParser):
    """Ids, in-page links, image sources, external references and the per-case table."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images, self.external = set(), [], [], []
        self.rows, self._in_cases, self._row, self._cell = [], False, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table" and attrs.get("id") == "cases":
            self._in_cases = True
        for key in ("href", "src"):
            value = attrs.get(key, "")
            if value.startswith("#"):
                self.links.append(value[1:])
            elif value and not value.startswith("data:"):
                self.external.append(value)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "link":
            self.external.append(str(attrs))
        if self._in_cases and tag == "tr":
            self._row = []
        if self._row is not None and tag == "td":
            self._cell = attrs.get("data-value", "")

    def handle_data(self, data):
        if self._cell is not None and self._cell == "" and data.strip():
            self._cell = data.strip()

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        if tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None
        if tag == "table":
            self._in_cases = False


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _value(text: str) -> float:
    return float(text) if text not in ("", "–") else math.nan


def _sort_key(value: float) -> tuple:
    return (math.isnan(value), 0.0 if math.isnan(value) else value)


def test_case_ids_that_read_alike_get_distinct_anchors_and_undefined_values_sort_last():
    pictures = [
        case_pictures.Picture(case, 1, "fast", b"png", case) for case in ("a b", "a_b", "a/b")
    ]
    links = report_html.anchors(pictures)
    assert len(set(links.values())) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", anchor) for anchor in links.values())
    rows = [
        {"case": case, "depth": 1, "mode": "fast", "class": "mean", "dice": dice}
        for case, dice in (("x", math.nan), ("y", 0.9), ("z", 0.1))
    ]
    rows.append({"case": "z", "depth": 1, "mode": "fast", "class": "1", "dice": 0.0})
    table = _parse(report_html.case_table(rows, ["dice"], "mean", {}, "dice"))
    assert [row[0] for row in table.rows] == ["z", "y", "x"]  # the class mean only


@pytest.mark.slow
def test_the_page_lists_every_case_worst_dice_first_with_the_worst_pictured(evaluated):
    out, rows = evaluated
    page = _parse((out / report_html.FILE).read_text())
    assert page.external == []  # self-contained: no resource outside the file
    assert len(page.rows) == len(rows)  # one class: one row per case and setting
    dice = [_value(row[3]) for row in page.rows]
    expected = sorted((_value(r["dice"]) for r in rows), key=_sort_key)
    assert [round(d, 4) for d in dice] == [round(d, 4) for d in expected]
    settings = {(r["depth"], r["mode"]) for r in rows}
    assert len([link for link in page.links if link.startswith("case-")]) == KEEP * len(settings)
    for depth, mode in settings:
        chosen = sorted(
            (r for r in rows if (r["depth"], r["mode"]) == (depth, mode)),
            key=lambda r: _sort_key(_value(r["dice"])),
        )
        for row in chosen[:KEEP]:
            assert any(
                link.startswith(f"case-{row['case']}-L{depth}-{mode}") for link in page.links
            )


@pytest.mark.slow
def test_every_link_has_its_target_and_every_image_is_an_embedded_png(evaluated):
    out, _ = evaluated
    text = (out / report_html.FILE).read_text()
    page = _parse(text)
    assert page.links and all(link in page.ids for link in page.links)
    assert len(page.images) >= 2  # the two figures, then the pictures
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert image.format == "PNG" and min(image.size) > 100
    for words in ("test split", "step", "L1 fast", "L2 accurate", "device", "95%"):
        assert words in text, words


def _chromium(url: str, profile, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", *extra, url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _console(stderr: str) -> list[str]:
    """The page's console messages in Chromium's log (uncaught errors among them)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_the_console_check_sees_an_uncaught_error(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>")
    result = _chromium(broken.as_uri(), tmp_path / "profile", "--dump-dom")
    assert any("notDefined" in line for line in _console(result.stderr)), result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_in_chromium_the_page_loads_cleanly_sorts_on_a_click_and_resolves_every_picture(
    evaluated, tmp_path
):
    out, rows = evaluated
    url = (out / report_html.FILE).as_uri() + "?selftest=hd95"
    result = _chromium(url, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console(result.stderr) == []
    found = re.search(r'<pre id="selftest">(.*?)</pre>', result.stdout)
    assert found, result.stdout[-2000:]
    selftest = json.loads(html.unescape(found.group(1)))
    assert selftest["found"] and selftest["ordered"] and selftest["rows"] == len(rows)
    assert selftest["broken_links"] == [] and selftest["broken_images"] == []
    assert selftest["images"] == len(_parse((out / report_html.FILE).read_text()).images)
    # The DOM after the click, against the CSV: hd95 ascending, undefined last.
    hd95_column = 3 + per_case.metric_columns(instances=True).index("hd95")  # after case, L, mode
    shown = [_value(row[hd95_column]) for row in _parse(result.stdout).rows]
    expected = sorted((_value(r["hd95"]) for r in rows), key=_sort_key)
    assert [round(v, 4) for v in shown] == [round(v, 4) for v in expected]
