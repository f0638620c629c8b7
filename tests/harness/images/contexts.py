"""Build contexts assembled in a temporary directory: the checkout's sources as ``.dockerignore``
allows, plus staged artifacts under top-level ``stage-*`` names.

Files are hard-linked where the filesystem allows (the cache, the checkout and the temporary
directory are usually on one filesystem), so a context of a few hundred megabytes costs no copy.
The builder still reads every file; only the Dockerfiles' ``COPY`` sources decide what lands in
an image. The ``.dockerignore`` itself is not copied: the context holds only what it allows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cluster.common import ClusterError


@dataclass(frozen=True)
class IgnoreRule:
    """One ``.dockerignore`` line: a pattern, and whether it re-includes (``!``)."""

    regex: re.Pattern[str]
    include: bool


def _translate(pattern: str) -> re.Pattern[str]:
    """A Docker ignore pattern as a regex over ``/``-separated paths relative to the root.

    ``**`` spans any number of directories, ``*`` and ``?`` stay within one, ``[...]`` classes
    pass through (``[^...]`` negates, as in Go's ``filepath.Match``).
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def read_dockerignore(path: Path) -> list[IgnoreRule]:
    """The rules of a ``.dockerignore`` (none when the file is missing)."""
    if not path.is_file():
        return []
    rules: list[IgnoreRule] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if include else line).lstrip("/")
        rules.append(IgnoreRule(_translate(pattern), include))
    return rules


def ignored(relative: str, rules: Iterable[IgnoreRule]) -> bool:
    """Whether Docker leaves ``relative`` out of the context: the last rule matching the path or
    one of its parent directories decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for rule in rules:
        if any(rule.regex.match(prefix) for prefix in prefixes):
            verdict = not rule.include
    return verdict


def source_files(repo: Path) -> list[str]:
    """The checkout's files (tracked, and untracked but not git-ignored) that ``.dockerignore``
    lets into a build context, relative to ``repo``."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others"]
            + ["--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(f"cannot list the files of the checkout {repo}: {exc}") from exc
    rules = read_dockerignore(repo / ".dockerignore")
    names = sorted({name for name in listing.decode().split("\0") if name})
    return [
        name
        for name in names
        if name != ".dockerignore" and (repo / name).is_file() and not ignored(name, rules)
    ]


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_tree(source: Path, target: Path) -> int:
    """Hard-link (else copy) a file or a directory tree; the number of files."""
    if source.is_file():
        _link_or_copy(source, target)
        return 1
    if not source.is_dir():
        raise ClusterError(f"nothing to stage at {source}")
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            _link_or_copy(path, target / path.relative_to(source))
            count += 1
    return count


@contextmanager
def build_context(
    repo: Path, staged: Mapping[str, Path], *, with_sources: bool = True
) -> Iterator[Path]:
    """A temporary build context: the checkout's sources (unless ``with_sources`` is off) and
    each staged path under its name (``{"stage-wheels": <dir>}``). Removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="streampulse-image-context-"))
    try:
        if with_sources:
            for name in source_files(repo):
                _link_or_copy(repo / name, root / name)
        for name, source in staged.items():
            if (root / name).exists():
                raise ClusterError(f"staged name {name} collides with a source of the checkout")
            link_tree(source, root / name)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
