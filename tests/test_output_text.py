"""User text (globs, regexes, repository and policy names, reasons) prints as it is.

regprune's consoles are rich consoles; rich reads ``[...]`` as markup and
``:name:`` as an emoji code by default, so a glob like ``app/[/x]*`` in a warning
ended in "unexpected MarkupError" and ``[bold]`` vanished.  Whatever the text,
a line or a table cell shows exactly it.
"""

from __future__ import annotations

import contextlib
import io

from hypothesis import given
from hypothesis import strategies as st
from rich.table import Table

from regprune.cli.output import OutputConsole

# Printable text without line breaks or the spaces a pipe's lines are trimmed of.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1
).filter(lambda text: text == text.strip())
BRACKETY = st.lists(
    st.sampled_from(["[", "]", "[/", "[bold]", "[/x]", ":smile:", "[link=x]", "\\", "a", "0-9"]),
    min_size=1,
).map("".join)


def printed(*items: object) -> str:
    console = OutputConsole(highlight=False, soft_wrap=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        console.print(*items)
    return out.getvalue()


@given(st.one_of(TEXT, BRACKETY))
def test_a_line_prints_exactly_its_text(text: str) -> None:
    assert printed(text) == text + "\n"


@given(st.one_of(TEXT, BRACKETY))
def test_a_table_cell_prints_exactly_its_text(text: str) -> None:
    table = Table("why", box=None, show_header=False, pad_edge=False)
    table.add_row(text)
    assert printed(table) == text + "\n"


def test_a_glob_with_brackets_is_warned_about_as_typed(regprune_cli, registry_server, pusher):
    pusher.push_image("app/web", ["v1"])
    glob = "app/[/x]*"
    result = regprune_cli("plan", "--registry", registry_server.url, "--repo", glob, "--keep", "1")
    assert result.code == 0, result.err
    assert f"'{glob}' matches no repository" in result.err
    assert "unexpected" not in result.err
