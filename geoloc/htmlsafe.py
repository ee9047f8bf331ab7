"""Escaping for every page and report geoloc writes, one function per context.

File names, area names and model names come from users and may contain anything: `<`, quotes,
backticks, `${...}`, `</script>`. Whatever lands in a page goes through exactly one of these:

- `text`: HTML text or a quoted attribute value. Besides `& < > " '` it also turns backtick, `$` and
  backslash into character references, so the result stays inert when a library (folium) later puts
  the HTML inside a JavaScript template literal.
- `js_template`: an HTML fragment (built with `text`) that is placed inside a JavaScript template
  literal within a <script> element: backslash, backtick and `$` are escaped so the literal can
  neither end nor interpolate, and `<` becomes `\\x3C` so no `</script>` or `<!--` can appear.
- `md_text` / `md_code`: plain text and inline code in a Markdown document.

Jinja2 templates (`environment()`) autoescape HTML and offer these as filters.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"

_JS_TEMPLATE = {"\\": "\\\\", "`": "\\`", "$": "\\$", "<": "\\x3C"}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")  # what acts mid-line (values never start a line)


def text(value: object) -> str:
    """VALUE as HTML text or attribute value, also inert inside a JavaScript template literal."""
    escaped = html.escape(str(value), quote=True)
    return escaped.replace("\\", "&#92;").replace("`", "&#96;").replace("$", "&#36;")


def js_template(fragment: str) -> str:
    """An HTML FRAGMENT made safe to sit between backticks inside a <script> element."""
    return "".join(_JS_TEMPLATE.get(ch, ch) for ch in fragment)


def md_text(value: object) -> str:
    """VALUE as literal Markdown text in the middle of a line or a table cell: emphasis, links, code,
    inline HTML, entities and cell separators are escaped; line breaks become spaces."""
    flat = " ".join(str(value).splitlines())
    return _MD_SPECIAL.sub(r"\\\1", flat)


def md_code(value: object) -> str:
    """VALUE as a Markdown code span: fenced with more backticks than it contains in a row."""
    flat = " ".join(str(value).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


@lru_cache(maxsize=None)
def environment():
    """The Jinja2 environment of geoloc's templates: HTML autoescaped (.html), Markdown filters."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(md=md_text, md_code=md_code)
    return env


def render(template: str, **values) -> str:
    """Render geoloc/templates/TEMPLATE with VALUES."""
    return environment().get_template(template).render(**values)
