"""`report.html`: one self-contained page to look at an evaluation (opens offline, no resources).

The page holds what was measured (split, step, settings, device), the summary table with 95%
bootstrap CIs per depth and mode, the figures `evaluate` draws (embedded as PNG data URIs), the
per-case table (worst cases first, sortable by any column with a click) and the pictures of the
worst cases (`case_pictures`), each linked from its row. Inline CSS and JS only.

`report.html?selftest=METRIC` clicks METRIC's header once and writes what it checked (the
order, every in-page link's target, every image decoded) into `<pre id="selftest">`, so a
headless browser's DOM dump shows whether the page works.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping, Sequence

from unetjax.evaluation import per_case
from unetjax.evaluation.case_pictures import Picture

FILE = "report.html"

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1500px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 5px; text-align: right; white-space: nowrap; }
td.text, th.text { text-align: left; }
thead th { background: #f2f2f2; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
dl.context { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dl.context dt { font-weight: 600; } dl.context dd { margin: 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #444; }
.scroll { max-height: 70vh; overflow: auto; display: inline-block; max-width: 100%; }
.ci { font-size: 11px; color: #555; }
.wide { overflow-x: auto; max-width: 100%; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.plots figure { margin: 0; flex: 1 1 480px; max-width: 640px; }
tr:target, figure:target { outline: 3px solid #0072B2; }
"""

SCRIPT = """
function cellKey(cell) {
  if (!('value' in cell.dataset)) return cell.textContent.trim();
  return cell.dataset.value === '' ? null : Number(cell.dataset.value);
}
function compareCells(a, b, ascending) {
  const x = cellKey(a), y = cellKey(b);
  if (x === null || y === null) return (x === null) - (y === null);  // undefined last
  const order = typeof x === 'number' ? x - y : x.localeCompare(y);
  return ascending ? order : -order;
}
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const column = Array.prototype.indexOf.call(th.parentNode.children, th);
  const ascending = th.getAttribute('aria-sort') !== 'ascending';
  const rows = Array.from(body.rows);
  rows.sort((a, b) => compareCells(a.cells[column], b.cells[column], ascending));
  rows.forEach((row) => body.appendChild(row));
  table.querySelectorAll('th').forEach((h) => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
}
document.querySelectorAll('table.sortable th').forEach((th) => {
  th.addEventListener('click', () => sortBy(th));
});
function selftest(metric) {
  const th = document.querySelector('#cases th[data-metric="' + metric + '"]');
  const result = {metric: metric, found: th !== null, ordered: false};
  if (th) {
    th.click();
    const column = Array.prototype.indexOf.call(th.parentNode.children, th);
    const keys = Array.from(document.querySelectorAll('#cases tbody tr'))
      .map((row) => cellKey(row.cells[column]));
    const defined = keys.filter((k) => k !== null);
    result.ordered = defined.every((k, i) => i === 0 || defined[i - 1] <= k) &&
      keys.slice(defined.length).every((k) => k === null);
    result.rows = keys.length;
  }
  const links = Array.from(document.querySelectorAll('a[href^="#"]'));
  result.links = links.length;
  result.broken_links = links.map((a) => a.getAttribute('href').slice(1))
    .filter((id) => document.getElementById(id) === null);
  const images = Array.from(document.images);
  result.images = images.length;
  result.broken_images = images.filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.alt);
  const out = document.createElement('pre');
  out.id = 'selftest';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
}
const requested = new URLSearchParams(location.search).get('selftest');
if (requested !== null) window.addEventListener('load', () => selftest(requested || 'dice'));
"""


def anchors(pictures: Sequence[Picture]) -> dict[tuple[str, int, str], str]:
    """(case, depth, mode) -> a unique HTML id for its picture."""
    ids: dict[tuple[str, int, str], str] = {}
    for picture in pictures:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", picture.case)
        base = anchor = f"case-{slug}-L{picture.depth}-{picture.mode}"
        suffix = 1
        while anchor in ids.values():
            suffix += 1
            anchor = f"{base}-{suffix}"
        ids[picture.case, picture.depth, picture.mode] = anchor
    return ids


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _number(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def _context(report: Mapping, num_pictures: int) -> str:
    settings = ", ".join(f"L{r['depth']} {r['mode']}" for r in report["results"])
    items = [
        ("model", report["model"]),
        ("architecture", report["architecture"]),
        ("split", f"{report['split']} ({report['results'][0]['num_images']} cases)"),
        ("checkpoint step", report["step"]),
        ("depths and modes", settings),
        ("device", report["device"]),
        ("dtype", report.get("dtype", "")),
        ("threshold", report["threshold"]),
        ("scored", report["scored"]),
        ("latency", report["latency"]),
        ("class shown", _class_text(report["headline_class"])),
        ("pictures", f"{num_pictures}: the worst cases by Dice per depth and mode"),
    ]
    rows = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(str(value))}</dd>" for name, value in items
    )
    return f'<dl class="context">{rows}</dl>'


def _class_text(headline: str) -> str:
    if headline == per_case.MEAN_CLASS:
        return "the mean over foreground classes (per case, then over cases)"
    return f"class {headline}"


def _summary_cell(cell: str | tuple[str, str]) -> str:
    """A value, or a mean with its CI in small type below it."""
    if isinstance(cell, str):
        return f"<td>{html.escape(cell)}</td>"
    mean, ci = cell
    return f'<td>{html.escape(mean)}<br><span class="ci">{html.escape(ci)}</span></td>'


def summary_table(report: Mapping) -> str:
    """Mean [95% CI] of every metric per depth and mode (the headline class), with parameters,
    latency and n, as `tables.per_case_table` writes it in Markdown."""
    headline = report["headline_class"]
    chosen = [s for s in report["summary"] if s["class"] == headline]
    metrics = list(dict.fromkeys(s["metric"] for s in chosen))
    by_key = {(s["depth"], s["mode"], s["metric"]): s for s in chosen}
    head = ["depth", "mode", "params", "latency (ms)", *metrics, "n"]
    lines = ['<div class="wide"><table><thead><tr>']
    lines += [*(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead>"]
    lines.append("<tbody>")
    for result in report["results"]:
        depth, mode = result["depth"], result["mode"]
        cells = [f"L{depth}", mode, f"{result['params']:,}", f"{result['latency_ms']:.2f}"]
        for metric in metrics:
            s = by_key.get((depth, mode, metric))
            ci = "" if s is None else f"[{_number(s['ci_low'])}, {_number(s['ci_high'])}]"
            cells.append((_number(s["mean"]) if s else "–", ci))
        n = by_key.get((depth, mode, metrics[0]), {}).get("n", "") if metrics else ""
        cells.append(str(n))
        lines.append("<tr>" + "".join(_summary_cell(c) for c in cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def case_table(
    rows: Sequence[Mapping],
    columns: Sequence[str],
    headline: str,
    links: Mapping[tuple[str, int, str], str],
    metric: str,
) -> str:
    """One row per case and setting (the headline class), lowest `metric` first (undefined
    last); each header sorts; a row with a picture links to it."""
    chosen = [r for r in rows if str(r["class"]) == headline]
    chosen.sort(key=lambda r: (not math.isfinite(r[metric]), r[metric], r["case"], r["depth"]))
    head = ['<th class="text">case</th><th>depth</th><th class="text">mode</th>']
    head += [f'<th data-metric="{html.escape(c)}">{html.escape(c)}</th>' for c in columns]
    head += ['<th class="text">picture</th>']
    body = []
    for index, row in enumerate(chosen):
        key = (row["case"], row["depth"], row["mode"])
        cells = [
            f'<td class="text">{html.escape(str(row["case"]))}</td>',
            f'<td data-value="{row["depth"]}">L{row["depth"]}</td>',
            f'<td class="text">{html.escape(row["mode"])}</td>',
        ]
        for column in columns:
            value = float(row[column])
            raw = repr(value) if math.isfinite(value) else ""
            cells.append(f'<td data-value="{raw}">{_number(value)}</td>')
        anchor = links.get(key)
        link = f'<a href="#{anchor}">view</a>' if anchor else ""
        cells.append(f'<td class="text">{link}</td>')
        row_id = f"row-{anchor}" if anchor else f"row-{index}"
        body.append(f'<tr id="{row_id}">' + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table id="cases" class="sortable"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _figure(uri: str, alt: str, caption: str, anchor: str | None = None) -> str:
    identity = f' id="{anchor}"' if anchor else ""
    return (
        f'<figure{identity}><img src="{uri}" alt="{html.escape(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def page(
    report: Mapping,
    rows: Sequence[Mapping],
    columns: Sequence[str],
    figures: Mapping[str, bytes],
    pictures: Sequence[Picture],
    *,
    metric: str,
) -> str:
    """The whole page as text. figures: name -> PNG bytes of `evaluate`'s figures."""
    links = anchors(pictures)
    title = (
        f"Evaluation of {report['architecture']}: {report['split']} split, step {report['step']}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _context(report, len(pictures)),
        "<h2>Summary: mean [95% bootstrap CI] per depth and mode</h2>",
        summary_table(report),
        "<h2>Pruning trade-off</h2>",
    ]
    parts.append('<div class="plots">')
    for name, png in figures.items():
        parts.append(_figure(data_uri(png), name, html.escape(name)))
    parts += [
        "</div>",
        "<h2>Per case</h2>",
        f"<p>Worst {html.escape(metric)} first; click a header to sort by it (again to reverse)."
        " Undefined values (–, e.g. distances when both masks are empty) sort last.</p>",
        case_table(rows, columns, report["headline_class"], links, metric),
        "<h2>Pictures of the worst cases</h2>",
    ]
    context = f"{report['split']} split, step {report['step']}, device {report['device']}"
    for picture in pictures:
        anchor = links[picture.case, picture.depth, picture.mode]
        caption = (
            f"{html.escape(picture.caption)} ({html.escape(context)}) "
            f'<a href="#row-{anchor}">back to its row</a>'
        )
        parts.append(_figure(data_uri(picture.png), picture.caption, caption, anchor))
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts)


def write(
    output: str,
    report: Mapping,
    rows: Sequence[Mapping],
    columns: Sequence[str],
    figure_names: Sequence[str],
    pictures: Sequence[Picture],
    *,
    metric: str,
) -> str:
    """Writes `report.html` into `output` (beside the figures it embeds); returns its name."""
    figures = {}
    for name in figure_names:
        if name.endswith(".png"):
            with open(os.path.join(output, name), "rb") as f:
                figures[name] = f.read()
    text = page(report, rows, columns, figures, pictures, metric=metric)
    with open(os.path.join(output, FILE), "w", encoding="utf-8") as f:
        f.write(text)
    return FILE
