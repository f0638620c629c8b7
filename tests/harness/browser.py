"""Headless Chromium for the dashboard's tests: the DOM after the page's scripts ran, screenshots.

Chromium is Debian's package (``make browser`` installs it). Every run gets a fresh profile and
the flags that keep it off the network: without them it tries to reach Google's services and
hangs on a closed network.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def require_chromium() -> Path:
    """The browser, or a failure that says how to get it (never a skip)."""
    if not CHROMIUM.is_file():
        raise AssertionError(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    return CHROMIUM


def _run(args: list[str], profiles: Path, timeout_s: float) -> str:
    profiles.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=profiles)
    argv = [str(require_chromium()), *FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise AssertionError(f"chromium exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


def dump_dom(url: str, profiles: Path, budget_ms: int = 15_000, timeout_s: float = 120) -> str:
    """The serialized DOM once the page's scripts had ``budget_ms`` of virtual time."""
    return _run(["--dump-dom", f"--virtual-time-budget={budget_ms}", url], profiles, timeout_s)


def screenshot(
    url: str,
    path: Path,
    profiles: Path,
    size: str = "1366,900",
    budget_ms: int = 15_000,
    timeout_s: float = 120,
) -> Path:
    """A PNG of the page at ``size`` (a laptop screen by default)."""
    _run(
        [
            f"--screenshot={path}",
            f"--window-size={size}",
            "--hide-scrollbars",
            f"--virtual-time-budget={budget_ms}",
            url,
        ],
        profiles,
        timeout_s,
    )
    return path


# Elements without an end tag in serialized HTML.
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"track", "wbr"}
)


@dataclass
class Element:
    """An element of the dumped DOM: its attributes (unescaped) and its text, cell by cell."""

    tag: str
    attrs: dict[str, str]
    cells: list[str] = field(default_factory=list)
    text: str = ""


class _Collector(HTMLParser):
    """Elements with a ``data-testid``, with the text inside them and inside each of their cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[Element] = []
        self.tags: list[str] = []
        self._open: list[tuple[int, Element]] = []  # (depth, element)
        self._cell: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        if "data-testid" in values:
            element = Element(tag, values)
            self.found.append(element)
            self._open.append((self._depth, element))
        if tag == "td" and self._open:
            self._cell = []
        if tag not in VOID:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        self._depth -= 1
        if tag == "td" and self._cell is not None and self._open:
            self._open[-1][1].cells.append("".join(self._cell))
            self._cell = None
        while self._open and self._open[-1][0] >= self._depth:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, element in self._open:
            element.text += data
        if self._cell is not None:
            self._cell.append(data)


def elements(dom: str) -> list[Element]:
    """Every element with a ``data-testid``, in document order."""
    collector = _Collector()
    collector.feed(dom)
    return collector.found


def by_testid(dom: str, testid: str) -> list[Element]:
    return [e for e in elements(dom) if e.attrs["data-testid"] == testid]


def tags(dom: str) -> list[str]:
    """Every start tag in the DOM, in order (to prove no data became markup)."""
    collector = _Collector()
    collector.feed(dom)
    return collector.tags
