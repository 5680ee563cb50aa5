"""bench/RESULTS.md is built from sections; each benchmark script rewrites only its own."""
from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(section: str, text: str, path: Path = RESULTS_MD) -> None:
    """Put ``text`` (which starts with the heading line ``section``) in place of that section of ``path``: the old
    section (up to the next ``## `` heading) is removed and the new one appended at the end."""
    old = path.read_text() if path.exists() else ""
    if section in old:
        head, _, rest = old.partition(section)
        nxt = rest.find("\n## ")
        old = head.rstrip() + "\n\n" + (rest[nxt + 1:] if nxt >= 0 else "")
    path.write_text(old.rstrip() + "\n\n" + text)
