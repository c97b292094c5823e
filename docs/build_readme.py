"""README.md is generated: `python docs/build_readme.py` assembles it from docs/*.md (the sources)
and the settings table of `stream.settings`, so README, docs and code cannot drift (a test checks)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.settings import documented_settings  # noqa: E402

ORDER = [("frontend", "Playing"), ("protocol", "Protocol"), ("recognition", "Recognition pipeline"),
         ("training", "Training"), ("maze", "Maze engine"), (None, "Configuration"),
         ("monitoring", "Metrics, monitoring and packaging"), ("security", "Security"),
         ("performance", "Performance")]

def slug(title: str) -> str:
    s = title.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")

def demote(text: str, first_title: str) -> str:
    """Shift headings one level down (outside code blocks); the first becomes the section title."""
    out, fence, first = [], False, True
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("#"):
            if first and line.startswith("# "):
                line = "## " + first_title
                first = False
            else:
                line = "#" + line
        out.append(line)
    return "\n".join(out).strip() + "\n"

def fix_links(text: str) -> str:
    """Links between docs become README anchors; image paths become repo-relative."""
    text = text.replace("](screenshots/", "](docs/screenshots/")
    text = text.replace("](../", "](")
    def repl(m: re.Match[str]) -> str:
        name, anchor = m.group(1), m.group(2)
        if anchor:
            return f"]({anchor})"
        for key, title in ORDER:
            if key == name:
                return f"](#{slug(title)})"
        return m.group(0)
    return re.sub(r"\]\((?:docs/)?(\w+)\.md(#[^)]*)?\)", repl, text)

def config_section() -> str:
    rows = ["## Configuration", "",
            "Every setting is an environment variable read once into `stream.settings.Settings` "
            "(`GM_*`; the two MLflow-facing ones keep their conventional names). Bad values stop the "
            "server at start with a message naming the variable.", "",
            "| Variable | Default | Meaning |", "|---|---|---|"]
    for env, default, doc in documented_settings():
        if isinstance(default, tuple):
            default = ",".join("=".join(p) if isinstance(p, tuple) else str(p) for p in default) or "(empty)"
        if default is None:
            default = "(unset)"
        rows.append(f"| `{env}` | `{default}` | {doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"

def build() -> str:
    toc, sections = [], []
    for key, title in ORDER:
        if key is None:
            sections.append(config_section())
        else:
            sections.append(fix_links(demote((ROOT / "docs" / f"{key}.md").read_text(), title)))
        toc.append(f"- [{title}](#{slug(title)})")
    sections.append((ROOT / "docs" / "development.md").read_text())
    toc.append("- [Development](#development)")
    body = (ROOT / "docs" / "readme-header.md").read_text().replace("@@TOC@@", "\n".join(toc))
    return body.rstrip() + "\n\n" + "\n".join(sections)


if __name__ == "__main__":
    (ROOT / "README.md").write_text(build())
