"""The evidence packet (commands.evidence) as a file a person hands over: HTML (one self-contained page that
prints on A4 and Letter), Markdown, or JSON with `schema_version` (docs/evidence-schema.json); and the
population (commands.population) as CSV or JSON.

Templates are Jinja2 (bot/templates); HTML autoescapes everything, Markdown escapes through the `md`
filter, so a summary like `<script>` or `<!channel>` is text wherever it lands. Times that commands/ marked
(commands.text.when, in audit reasons) are ISO 8601 UTC here, as in every plain-text output."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from commands import evidence, population
from commands.evidence import Packet

from bot import uploads
from bot.times import iso_all

FORMATS = ("html", "json", "md")
POPULATION_FORMATS = ("csv", "json")
MIME = {"html": "text/html", "json": "application/json", "md": "text/markdown", "csv": "text/csv"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#<>&!])")


def _md(value: Any) -> str:
    """Markdown table text: one line, every character Markdown (or HTML inside it) would act on escaped."""
    text = " ".join(str(value if value is not None else "").split())
    return _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(m.group(1), "\\" + m.group(1)), text)


_ENV = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                   autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True,
                                                default=False),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENV.filters["md"] = _md


def as_data(p: Packet) -> dict[str, Any]:
    """The packet as JSON-ready data: what the JSON format is, and what the templates read."""
    return iso_all(json.loads(json.dumps(p.to_dict(), default=str)))


def render(p: Packet, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format is one of {', '.join(FORMATS)}, not {fmt!r}")
    data = as_data(p)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    template = _ENV.get_template("evidence.html.j2" if fmt == "html" else "evidence.md.j2")
    return template.render(p=data, r=data["release"])


def filename(p: Packet, fmt: str) -> str:
    return f"evidence-{p.release['ref']}.{fmt}"


def population_text(rows: list[population.Row], fmt: str, meta: dict[str, Any]) -> str:
    if fmt not in POPULATION_FORMATS:
        raise ValueError(f"format is one of {', '.join(POPULATION_FORMATS)}, not {fmt!r}")
    if fmt == "json":
        body = {"schema_version": evidence.SCHEMA_VERSION, **meta, "count": len(rows),
                "rows": [iso_all(r.as_dict()) for r in rows]}
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(population.COLUMNS)
    for r in rows:
        d = iso_all(r.as_dict())
        writer.writerow(["; ".join(v) if isinstance(v, list) else ("yes" if v is True else "no" if v is False else
                                                                   "" if v is None else _cell(v))
                         for v in (d[c] for c in population.COLUMNS)])
    return out.getvalue()


def _cell(value: Any) -> str:
    # A cell a spreadsheet would run as a formula (=, +, -, @) is kept as text.
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


@uploads.producer("evidence_packet")
def evidence_packet(db, clock, policy, *, release_id: int, format: str = "html") -> uploads.Upload:  # noqa: A002
    """Made when the upload is sent: the packet shows the record as it is then."""
    p = evidence.packet(db, release_id, clock.now(), policy)
    return uploads.Upload(filename(p, format), render(p, format).encode(),
                          f"Evidence packet {p.release['ref']} ({format.upper()})")
