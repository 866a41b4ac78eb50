"""The status page's HTML: server-rendered from ``status_view`` documents, nothing loaded.

Every value goes through ``esc`` (``html.escape`` with quotes), whatever its
origin, so a miner's ``<script>`` in an error text is shown as text. The
only script is the inline one below (sort by a column, filter rows), the
chart an inline SVG drawn here; no CDN, no build step, nothing fetched.

    html = overview_page(reader.overview(now))
    html = miner_page(reader.miner(uid, now))
"""

from __future__ import annotations

import html
import json
from urllib.parse import urlencode

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none}
td.t,th.t{text-align:left}
.flag{color:#a00;font-weight:600}
.muted{color:#777}
code,pre{font:12px ui-monospace,monospace}
pre{background:#f6f6f6;padding:6px;max-width:70em;white-space:pre-wrap;word-break:break-all}
.confirmed{color:#070}.disputed{color:#b60}.not_answered{color:#a00}.no_evidence{color:#777}
"""

# Sort a table by the clicked header (numbers as numbers), and hide rows that do
# not contain the filter box's text. Works on what the server rendered.
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(th => {
  th.addEventListener('click', () => {
    const col = th.cellIndex;
    const body = th.closest('table').tBodies[0];
    const asc = th.dataset.dir !== 'asc';
    th.dataset.dir = asc ? 'asc' : 'desc';
    const key = r => r.cells[col].dataset.v ?? r.cells[col].textContent;
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(r => body.appendChild(r));
  });
});
const box = document.getElementById('filter');
if (box) box.addEventListener('input', () => {
  const q = box.value.trim().toLowerCase();
  document.querySelectorAll('#miners tbody tr').forEach(r => {
    r.hidden = q !== '' && !r.textContent.toLowerCase().includes(q);
  });
});
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def num(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    return esc(f"{value:.{digits}f}" if isinstance(value, float) else value)


def cell(value: float | int | None, digits: int = 4) -> str:
    sort_key = "" if value is None else f' data-v="{esc(value)}"'
    return f"<td{sort_key}>{num(value, digits)}</td>"


def document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}<script>{SCRIPT}</script></body></html>"
    )


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s"


def overview_page(view: dict) -> str:
    """The validator's page: epoch, phase, last cycles and the miners table."""
    cycles = "".join(
        "<tr>"
        f"<td>{esc(c['epoch'])}</td><td class=t>{esc(c['phase'])}</td>"
        f"<td class=t><code>{esc((c['plan_hash'] or '')[:16])}</code></td>"
        f"{cell(c['batches'])}{cell(c['confidence_mean'], 3)}{cell(c['confidence_min'], 3)}"
        f"{cell(c['submissions'])}{cell(c['flags'])}"
        f"<td class=t>{esc({True: 'set', False: 'NOT set', None: '-'}[c['weights_set']])}</td>"
        "</tr>"
        for c in view["cycles"]
    )
    miners = view["miners"]
    rows = "".join(
        f'<tr data-uid="{esc(m["uid"])}">'
        f'<td data-v="{esc(m["uid"])}"><a href="miner/{esc(m["uid"])}">{esc(m["uid"])}</a></td>'
        f"<td class=t><code>{esc(m['hotkey'])}</code></td>"
        f"<td class=t><code>{esc(m['coldkey'])}</code></td>"
        f'<td data-v="{esc(m["answered"])}">{esc(m["answered"])}/{esc(m["assigned"])}</td>'
        f"{cell(m['quality'])}{cell(m['recall'])}{cell(m['credibility'])}"
        f"{cell(m['score'], 6)}{cell(m['weight'], 6)}"
        f"<td class='t flag'>{esc(', '.join(m['flags']))}</td>"
        "</tr>"
        for m in miners["rows"]
    )
    pages = _pager(miners["page"], miners["pages"], {"q": miners["query"]})
    body = (
        f"<h1>Validator status</h1><p>epoch <b id=epoch>{esc(view['epoch'])}</b>, "
        f"phase <b id=phase>{esc(view['phase'])}</b>, "
        f"{esc(duration(view['phase_seconds_left']))} left in it. "
        f'<a href="?format=json">JSON</a></p>'
        "<h2>Last cycles</h2><table class=sortable id=cycles><thead><tr>"
        "<th>epoch</th><th class=t>phase</th><th class=t>plan hash</th><th>batches</th>"
        "<th>confidence mean</th><th>min</th><th>submissions</th><th>flags</th>"
        f"<th class=t>weights</th></tr></thead><tbody>{cycles}</tbody></table>"
        f"<h2>Miners (epoch {esc(view['scored_epoch'])}, {esc(miners['total'])})</h2>"
        '<form><input id=filter name=q placeholder="filter: uid, hotkey, coldkey, flag" '
        f'value="{esc(miners["query"])}" size=40></form>'
        "<table class=sortable id=miners><thead><tr><th>uid</th><th class=t>hotkey</th>"
        "<th class=t>coldkey</th><th>answered</th><th>quality</th><th>recall</th>"
        "<th>credibility</th><th>score</th><th>weight</th><th class=t>flags</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{pages}"
    )
    return document("Validator status", body)


def _pager(page: int, pages: int, params: dict[str, str]) -> str:
    """Links to every page, keeping ``params`` (the filter) in each link's query string."""
    if pages <= 1:
        return ""
    # URL-encoded first (a filter's "&" or "#" would end its value), then
    # HTML-escaped for the attribute.
    links = [
        f"<b>{n}</b>" if n == page else f'<a href="?{esc(urlencode(params | {"page": n}))}">{n}</a>'
        for n in range(1, pages + 1)
    ]
    return f"<p>page {' '.join(links)}</p>"


def miner_page(view: dict) -> str:
    """One miner's page: cycles, chart, zipcode outcomes, flags, answers, S3 rounds."""
    cycles = "".join(
        f"<tr><td>{esc(c['epoch'])}</td>"
        f'<td data-v="{esc(c["answered"])}">{esc(c["answered"])}/{esc(c["assigned"])}</td>'
        f"{cell(c['quality'])}{cell(c['recall'])}{cell(c['credibility'])}"
        f"{cell(c['score'], 6)}{cell(c['weight'], 6)}"
        f"<td class='t flag'>{esc(', '.join(c['flags']))}</td></tr>"
        for c in view["cycles"]
    )
    zipcodes = view["zipcodes"]
    counts = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(zipcodes["counts"].items()))
    zip_rows = "".join(
        f"<tr><td class=t>{esc(z['zipcode'])}</td>"
        f"<td class='t {esc(z['outcome'])}'>{esc(z['outcome'].replace('_', ' '))}</td></tr>"
        for z in zipcodes["rows"]
    )
    flags = "".join(
        f"<tr><td>{esc(f['epoch'])}</td><td class='t flag'>{esc(f['kind'])}</td>"
        + (
            "<td class='t muted'>kept by the validator</td></tr>"
            if f["evidence"] is None
            else f"<td class=t><pre>{esc(json.dumps(f['evidence'], indent=1, ensure_ascii=False))}"
            "</pre></td></tr>"
        )
        for f in view["flags"]
    )
    answers = "".join(
        f"<tr><td>{esc(a['epoch'])}</td><td class=t><code>{esc(a['request_id'])}</code></td>"
        f"<td class=t>{esc(a['kind'])}</td><td class=t>{esc(a['status'])}</td>"
        f"{cell(a['completed_after_s'], 2)}<td class=t>{esc(a['error'])}</td></tr>"
        for a in view["answers"]
    )
    rounds = "".join(
        f"<tr><td class=t>{esc(r['round'])}</td>{cell(r['reward'])}"
        f"<td class=t>{esc('; '.join(r['reasons']))}</td></tr>"
        for r in view["s3_rounds"]
    )
    body = (
        f'<p><a href="../">all miners</a></p><h1>Miner {esc(view["uid"])}</h1>'
        f"<p>hotkey <code id=hotkey>{esc(view['hotkey'])}</code>, coldkey "
        f"<code>{esc(view['coldkey'])}</code>; last scored epoch {esc(view['latest_epoch'])}. "
        f'<a href="?format=json">JSON</a></p>'
        f"<h2>Score and weight over cycles</h2>{history_chart(view['cycles'])}"
        "<h2>Cycles</h2><table class=sortable id=cycles><thead><tr><th>epoch</th>"
        "<th>answered</th><th>quality</th><th>recall</th><th>credibility</th><th>score</th>"
        f"<th>weight</th><th class=t>flags</th></tr></thead><tbody>{cycles}</tbody></table>"
        f"<h2>Flags and their evidence</h2>"
        + (
            "<table id=flags><thead><tr><th>epoch</th><th class=t>flag</th>"
            f"<th class=t>evidence</th></tr></thead><tbody>{flags}</tbody></table>"
            if flags
            else "<p id=flags class=muted>no flags</p>"
        )
        + f"<h2>Zipcodes of epoch {esc(view['latest_epoch'])}</h2><p>{counts}</p>"
        "<table class=sortable id=zipcodes><thead><tr><th class=t>zipcode</th>"
        f"<th class=t>outcome</th></tr></thead><tbody>{zip_rows}</tbody></table>"
        f"{_pager(zipcodes['page'], zipcodes['pages'], {})}"
        "<h2>Answers</h2><table class=sortable id=answers><thead><tr><th>epoch</th>"
        "<th class=t>request</th><th class=t>kind</th><th class=t>status</th>"
        "<th>completed after s</th><th class=t>error</th></tr></thead>"
        f"<tbody>{answers}</tbody></table>"
        "<h2>S3 evaluation rounds</h2><table id=s3><thead><tr><th class=t>round</th>"
        f"<th>reward</th><th class=t>reasons</th></tr></thead><tbody>{rounds}</tbody></table>"
    )
    return document(f"Miner {view['uid']}", body)


CHART_W, CHART_H, PAD = 640, 180, 36


def history_chart(cycles: list[dict]) -> str:
    """Score and weight per cycle as two lines of an inline SVG, oldest cycle on the left."""
    points = [c for c in reversed(cycles) if c["score"] is not None]
    if not points:
        return "<p class=muted>no scored cycle</p>"
    top = max(max(c["score"] or 0.0, c["weight"] or 0.0) for c in points) or 1.0
    step = (CHART_W - 2 * PAD) / max(1, len(points) - 1)

    def xy(i: int, value: float | None) -> str:
        y = CHART_H - PAD - (value or 0.0) / top * (CHART_H - 2 * PAD)
        return f"{PAD + i * step:.1f},{y:.1f}"

    lines = []
    for key, colour in (("score", "#1f77b4"), ("weight", "#d62728")):
        path = " ".join(xy(i, c[key]) for i, c in enumerate(points))
        lines.append(f'<polyline fill=none stroke="{colour}" stroke-width=2 points="{path}"/>')
        lines += [
            f'<circle r=3 fill="{colour}" cx="{xy(i, c[key]).split(",")[0]}" '
            f'cy="{xy(i, c[key]).split(",")[1]}"><title>epoch {esc(c["epoch"])} {key} '
            f"{esc(c[key])}</title></circle>"
            for i, c in enumerate(points)
        ]
    labels = "".join(
        f'<text x="{PAD + i * step:.1f}" y="{CHART_H - 12}" font-size=10 '
        f"text-anchor=middle>{esc(c['epoch'])}</text>"
        for i, c in enumerate(points)
    )
    return (
        f'<svg id=chart xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" '
        f'role=img aria-label="score and weight over cycles">'
        f'<line x1="{PAD}" y1="{CHART_H - PAD}" x2="{CHART_W - PAD}" y2="{CHART_H - PAD}" '
        'stroke="#999"/>'
        f'<text x="{PAD}" y="14" font-size=11>max {esc(f"{top:.4g}")}</text>'
        f'<text x="{CHART_W - 150}" y="14" font-size=11 fill="#1f77b4">score</text>'
        f'<text x="{CHART_W - 100}" y="14" font-size=11 fill="#d62728">weight</text>'
        f"{''.join(lines)}{labels}</svg>"
    )


def error_page(status: int, message: str) -> str:
    return document(f"{status}", f"<h1>{esc(status)}</h1><p>{esc(message)}</p>")
