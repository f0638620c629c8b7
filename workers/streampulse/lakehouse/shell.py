"""``streampulse sql``: one query, or an interactive shell, over the Paimon tables.

Results print as an aligned text table (default), JSON lines or CSV. The shell reads statements
ending in ``;`` (over several lines if need be); ``.tables`` lists the tables, ``.quit`` leaves.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from typing import Any, Literal

import pyarrow as pa

from streampulse.errors import LakehouseError
from streampulse.lakehouse.reading import Lakehouse

OutputFormat = Literal["table", "json", "csv"]
MAX_CELL_CHARS = 60


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """An aligned text table of the first ``max_rows`` rows, with a row count footer."""
    names = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.slice(0, max_rows).to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    line = "-+-".join("-" * w for w in widths)
    out = [" | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)), line]
    out += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    shown = f", first {max_rows} shown" if table.num_rows > max_rows else ""
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}{shown})")
    return "\n".join(out)


def format_result(table: pa.Table, output: OutputFormat, max_rows: int = 50) -> str:
    if output == "json":
        return "\n".join(json.dumps(row, default=str) for row in table.to_pylist())
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(table.column_names)
        writer.writerows(row.values() for row in table.to_pylist())
        return buffer.getvalue().rstrip("\n")
    return format_table(table, max_rows)


def run_query(lakehouse: Lakehouse, sql: str, output: OutputFormat) -> str:
    return format_result(lakehouse.query(sql).table, output)


def statements(lines: Iterable[str]) -> Iterable[str]:
    """Statements of an interactive session: text up to each ``;``, or a dot command."""
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not pending and stripped.startswith("."):
            yield stripped
            continue
        pending.append(line)
        if stripped.endswith(";"):
            yield "\n".join(pending).strip().rstrip(";")
            pending = []
    if "".join(pending).strip():
        yield "\n".join(pending).strip()


def interactive(
    lakehouse: Lakehouse,
    output: OutputFormat,
    read_line: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> None:
    """Read statements until end of input or ``.quit``; errors are shown, the shell goes on."""
    write(f"streampulse sql over {lakehouse.database}: end statements with ';', .tables, .quit")

    def lines() -> Iterable[str]:
        prompt = "sql> "
        while True:
            try:
                line = read_line(prompt)
            except EOFError:
                return
            done = line.strip().endswith(";") or line.strip().startswith(".")
            prompt = "sql> " if done or not line.strip() else "...> "
            yield line

    for statement in statements(lines()):
        if statement in {".quit", ".exit"}:
            return
        if statement == ".tables":
            write("\n".join(lakehouse.tables()) or "(no tables yet)")
            continue
        try:
            write(run_query(lakehouse, statement, output))
        except LakehouseError as exc:
            write(f"error: {exc}")
