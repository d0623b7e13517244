"""The self-contained report.html: figures embedded as PNG data URIs, every text from the data or the model
HTML-escaped, and a Content-Security-Policy under which the page can load nothing but its own images."""

from __future__ import annotations

import base64
import html
import json
import math

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 540px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
td.text { max-width: 560px; white-space: pre-wrap; word-break: break-word; }
.note { color: #8a5300; font-size: 0.9em; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return esc(value)


def table(header: list[str] | None, rows: list[list], numeric=frozenset(), text_cols=frozenset()) -> str:
    """An HTML table of escaped cells; ``numeric`` columns right-aligned with 4 decimals."""
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>" if header else ""
    body = []
    for row in rows:
        cells = []
        for j, v in enumerate(row):
            cls = ' class="num"' if j in numeric else ' class="text"' if j in text_cols else ""
            cells.append(f"<td{cls}>{number(v) if j in numeric else esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def figure(name: str, title: str, caption: str, image: bytes) -> str:
    data = base64.b64encode(image).decode("ascii")
    return (
        f'<figure id="{esc(name)}"><img src="data:image/png;base64,{data}" alt="{esc(title)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) if v else "(none)"
    return v if isinstance(v, float) else str(v)


def page(about: dict, scalars: dict, sections: list[tuple[str, str]], notes: list[str]) -> str:
    """``sections``: (heading, inner HTML already escaped) in order."""
    title = f"llmhead report: {about.get('model', '')} ({about.get('task', '')})"
    facts = table(None, [[k, v] for k, v in about.items()])
    metric_rows = [[k, v] for k, v in scalars.items()]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        facts,
        "<h2>Metrics</h2>",
        table(["metric", "value"], metric_rows, numeric={1}),
    ]
    parts += [f'<p class="note">{esc(n)}</p>' for n in notes]
    for heading, inner in sections:
        parts.append(f"<h2>{esc(heading)}</h2>{inner}")
    parts.append("</body></html>")
    return "\n".join(parts)


def worst_table(task: str, rows: list[dict]) -> str:
    if not rows:
        return "<p>No examples.</p>"
    if task == "classification":
        header, keys, numeric = (
            ["row", "text", "true", "predicted", "p(true)", "p(predicted)"],
            ["row", "text", "true", "predicted", "p_true", "p_predicted"],
            {4, 5},
        )
    elif task == "multilabel":
        header, keys, numeric = (
            ["row", "text", "true", "predicted", "log loss"],
            ["row", "text", "true", "predicted", "log_loss"],
            {4},
        )
    else:
        header, keys, numeric = (
            ["row", "text", "true", "predicted", "|error|"],
            ["row", "text", "true", "predicted", "abs_error"],
            {4},
        )
    body = [[_value(r[k]) for k in keys] for r in rows]
    return table(header, body, numeric=numeric, text_cols={1})


def calibration_table(record: dict | None) -> str:
    if not record:
        return "<p>Not calibrated (calibrate='none', or a mode without a validation split).</p>"
    shown = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in record.items()}
    return table(None, [[k, v] for k, v in shown.items()])
