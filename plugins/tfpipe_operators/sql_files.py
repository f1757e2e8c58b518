"""A spec's SQL files, and errors that point into them.

The jobs never run a SQL file as written: they wrap it (`SELECT * FROM (<file>) LIMIT 0`
for its columns, a `GROUP BY` for duplicate keys, the day's statistics, a hash range per
worker), and locally sqlglot transpiles the result to DuckDB on one line. An error's line
number is then a line of that wrapper, not of the file. So `tag` puts a comment naming
the file at the start of the file's first line: it travels inside every wrapped query
(to BigQuery too, where a job's text then says which file it came from), shifts no line,
and `locate` finds it to turn an error into `<file>:<line>: <message>` in the file's own
numbering.

Imported by the validator (Airflow side) and the jobs' warehouse: sqlglot only, no
database client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

_MARKER = re.compile(r"/\* tfpipe sql file: (?P<path>.+?) \((?P<lines>\d+) lines\) \*/ ")
# BigQuery reports positions as `[line:column]` of the submitted text.
_BIGQUERY_POSITION = re.compile(r"\[(\d+):(\d+)\]")
# DuckDB names the object it could not bind in quotes or after "with name".
_DUCKDB_NAMES = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*)"|with name ([A-Za-z_][A-Za-z0-9_.]*)')


def tag(path: Path | str, text: str) -> str:
    """The file's text with its path in a comment at the start of line 1 (no line moves)."""
    name = str(path).replace("*/", "*_/")  # a path cannot close the comment early
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    return f"/* tfpipe sql file: {name} ({lines} lines) */ {text}"


@dataclass(frozen=True)
class Place:
    """Where a tagged file sits inside a (wrapped) query."""

    path: str
    first_line: int  # 1-based line of the query holding the file's line 1
    lines: int
    body: str  # the file's text as it appears in the query, without the tag

    def file_line(self, query_line: int) -> int | None:
        """The file's own line for a line of the query; None when the line is not the file's."""
        line = query_line - self.first_line + 1
        if line < 1:
            return None
        return min(line, self.lines)


def places(query: str) -> list[Place]:
    """Every tagged file inside a query, in order."""
    found = []
    for match in _MARKER.finditer(query):
        first_line = query.count("\n", 0, match.start()) + 1
        lines = int(match.group("lines"))
        rest = query[match.end() :].split("\n")
        found.append(Place(match.group("path"), first_line, lines, "\n".join(rest[:lines])))
    return found


def source_file(query: str) -> str | None:
    """The SQL file a query was built from, if it carries a tag."""
    found = places(query)
    return found[0].path if found else None


def locate(query: str, message: str, query_line: int | None = None, name: str | None = None) -> str:
    """`<file>:<line>: <message>` for an error in `query`, the line in the file's numbering.

    `query_line` is the line the engine reported in the text it received; `name` an
    identifier it named (a column, a table), looked up in the file when the engine gives
    no usable line (DuckDB runs sqlglot's one-line transpilation). Without a tag the
    message is returned as it is, with the query line when there is one.
    """
    found = places(query)
    if not found:
        return f"line {query_line}: {message}" if query_line else message
    if query_line is not None:
        for place in reversed(found):
            line = place.file_line(query_line)
            if line is not None:
                past_end = query_line - place.first_line + 1 > place.lines
                return f"{place.path}:{line}: {message}" + (" (at the end of the file)" if past_end else "")
    if name:
        for place in found:
            line = _line_of_name(place.body, name)
            if line is not None:
                return f"{place.path}:{line}: {message}"
    return f"{found[0].path}: {message}"


def _line_of_name(body: str, name: str) -> int | None:
    """The first line of the file where `name` appears as a token (not in a comment or string)."""
    try:
        tokens = sqlglot.Tokenizer().tokenize(body)
    except sqlglot.errors.SqlglotError:
        return None
    wanted = name.lower().split(".")[-1]
    for token in tokens:
        if token.text.lower() == wanted:
            return int(token.line)
    return None


def parse_error(query: str, exc: sqlglot.errors.SqlglotError) -> str:
    """A sqlglot parse or tokenize error of `query`, located in its SQL file."""
    if isinstance(exc, sqlglot.errors.ParseError) and exc.errors:
        first = exc.errors[0]
        near = str(first.get("highlight") or "").strip()
        message = str(first.get("description") or "syntax error") + (f" near {near!r}" if near else "")
        line = first.get("line")
        return locate(query, f"not valid BigQuery SQL: {message}", int(line) if line else None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    line = None
    context = re.match(r"Error tokenizing '(.*)'$", str(exc), re.DOTALL)
    if context:  # sqlglot gives the text up to where it stopped, not a line
        start = query.find(context.group(1))
        if start >= 0:
            line = query.count("\n", 0, start + len(context.group(1))) + 1
        text = "cannot tokenize (an unclosed quote or comment?)"
    return locate(query, f"not valid BigQuery SQL: {text}", line)


def duckdb_error(query: str, exc: Exception, what: str = "query failed on DuckDB") -> str:
    """A DuckDB error of the transpiled `query`, located in its SQL file by the name it gives."""
    message = f"{what}: " + (str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    match = _DUCKDB_NAMES.search(str(exc))
    name = (match.group(1) or match.group(2)) if match else None
    return locate(query, message, name=name)


def bigquery_error(query: str, exc: Exception, what: str = "query failed on BigQuery") -> str:
    """A BigQuery error (`... at [line:column]` of the text sent), located in its SQL file."""
    message = f"{what}: " + (str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    position = _BIGQUERY_POSITION.search(message)
    return locate(query, message, int(position.group(1)) if position else None)


def parameters_used(bigquery_sql: str) -> set[str]:
    """Names of the `@param`s a query refers to (raises sqlglot's errors on bad SQL)."""
    tree = sqlglot.parse_one(bigquery_sql, read="bigquery")
    return {str(node.name) for node in tree.find_all(exp.Parameter)}


_DATE_LITERAL = re.compile(r"'(\d{4}-\d{2}-\d{2})'")


def ds_problem(path: Path | str, key: str, bigquery_sql: str, static: bool) -> tuple[str, bool] | None:
    """Why a training or scoring query that does not use `@ds` is wrong: (message, is_error).

    Such a query reads the same rows whatever day runs, and those rows are written as the
    run's `ds`. `static` is the spec's explicit opt-out (`<section>.static_sql: true`): the
    same message then is a warning. None when the query uses `@ds`.
    """
    if "ds" in parameters_used(bigquery_sql):
        return None
    dates = sorted(set(_DATE_LITERAL.findall(bigquery_sql)))
    seen = f" (it has the date literal(s) {', '.join(dates)})" if dates else ""
    section = key.partition(".")[0]
    if static:
        return (
            f"{path}: does not use @ds{seen}; every run reads the same rows and labels them with its own ds "
            f"({section}.static_sql: true)",
            False,
        )
    return (
        f"{path}: does not use @ds{seen}, so every day's run would read the same rows and write them as that "
        f"day's; filter on @ds (a query parameter, e.g. WHERE event_date = @ds), or set {section}.static_sql: true "
        "in the spec if the query is meant to ignore the day",
        True,
    )
