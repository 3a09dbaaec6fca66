"""What every ``vigil`` command shares: the consoles, one-line errors, the HTTP call to a
running server, durations and times as people write and read them.

Invariants:

- A user's mistake (bad option, bad value, unreachable server, refused request) is one
  line on stderr starting ``error:`` and exit status 2; never a traceback.
  :class:`VigilGroup` turns click's own usage errors into that line too.
- What a command *produces* (a tag, a table, JSON) goes to stdout; progress, warnings and
  summaries to stderr, so ``vigil ... | jq`` and ``TAG=$(vigil register ...)`` work.
- Piped stdout is not a terminal: tables are then laid out as wide as their content
  (never cut at 80 columns); on a terminal they follow its width.
- The bearer token is stripped of surrounding whitespace, as the server strips
  ``VIGIL_API_TOKEN`` (a secret file's trailing newline would otherwise be sent).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import sys
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

#: Width of tables written to a pipe or file: wide enough for any row we print.
PIPE_WIDTH = 4096

err = Console(stderr=True, soft_wrap=True, highlight=False)


def out() -> Console:
    """A console on the current stdout: the terminal's width on a terminal, else
    :data:`PIPE_WIDTH` (made per call: tests and pipes swap ``sys.stdout``)."""
    console = Console(soft_wrap=True, highlight=False, markup=False)  # user text may hold [brackets]
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    err.print("[bold red]error:[/] " + _escape(message))
    raise typer.Exit(code=2)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def warn(message: str) -> None:
    """``warning: message`` on stderr."""
    err.print("[yellow]warning:[/] " + _escape(message))


def note(message: str) -> None:
    """A plain line on stderr (progress, summaries), never read as markup."""
    err.print(message, markup=False)


def _is(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` is click's exception class ``name``, by name: typer >= 0.2x vendors
    its own copy of click (``typer._click``), older ones use click itself."""
    return any(c.__name__ == name for c in type(exc).__mro__)


class VigilGroup(TyperGroup):
    """Click's usage errors as one ``error:`` line (exit 2) with a "did you mean" for
    unknown commands, instead of click's four-line usage block."""

    def resolve_command(self, ctx, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:
            if _is(exc, "UsageError") and args:
                close = difflib.get_close_matches(args[0], self.list_commands(ctx), n=1)
                exc.message = f"no such command {args[0]!r}" + (f"; did you mean {close[0]!r}?" if close else "")
            raise

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as exc:
            if _is(exc, "NoArgsIsHelpError"):
                exc.show()  # a group called bare: its help, as click would
                return _leave(2, standalone_mode)
            if _is(exc, "ClickException"):
                message = exc.format_message()
                ctx = getattr(exc, "ctx", None)
                if _is(exc, "UsageError") and ctx is not None:
                    message += f" (see '{ctx.command_path} --help')"
                err.print("[bold red]error:[/] " + _escape(" ".join(message.split())))
                return _leave(exc.exit_code, standalone_mode)
            if _is(exc, "Abort"):
                err.print("[bold red]error:[/] aborted")
                return _leave(1, standalone_mode)
            raise
        return _leave(rv if isinstance(rv, int) else 0, standalone_mode)


def _leave(code: int, standalone: bool) -> Any:
    if standalone:
        sys.exit(code)
    return code


def typer_app(help: str, **kwargs: Any) -> typer.Typer:
    """A command group with plain help text (no ``<bool>`` types, no boxes: it reads the
    same in a terminal, a pipe and a snapshot) and one-line usage errors."""
    return typer.Typer(cls=VigilGroup, rich_markup_mode=None, add_completion=False, no_args_is_help=True,
                       help=help, context_settings={"help_option_names": ["-h", "--help"],
                                                    "max_content_width": 100}, **kwargs)


# -- durations and times ------------------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number (seconds) or units, e.g. ``90s``, ``10m``,
    ``2h``, ``1d``, ``1h30m``. Raises ``ValueError`` naming the accepted forms.

    >>> parse_duration("1h30m"), parse_duration("45")
    (5400.0, 45.0)
    """
    s = text.strip().lower().replace(" ", "")
    try:
        seconds = float(s)
    except ValueError:
        if not s or not re.fullmatch(f"(?:{_PART.pattern})+", s):
            raise ValueError(f"{text!r} is not a duration; write seconds (90) or units: 90s, 10m, 2h, 1d, 1h30m") \
                from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(s))
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{text!r}: a duration must be positive and finite")
    return seconds


def duration_option(default: str, *names: str, help: str) -> Any:
    """An option taking a duration (:func:`parse_duration`), passed on in seconds."""
    def convert(value: Any) -> float:
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return typer.Option(default, *names, help=help, parser=convert, metavar="DURATION")


def iso(epoch: Optional[float]) -> str:
    """Epoch seconds as ISO-8601 UTC (``2026-12-05T07:22:40Z``); empty for None."""
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(float(epoch), tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """``3600`` -> ``1h``, ``5400`` -> ``1h30m``, ``45`` -> ``45s``."""
    left, parts = int(round(seconds)), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


# -- a running server -------------------------------------------------------------------------
def url_option() -> Any:
    return typer.Option("http://127.0.0.1:3000", "--url", metavar="URL", help="The running Vigil server.")


def token_option() -> Any:
    return typer.Option(None, "--token", envvar="VIGIL_API_TOKEN", show_envvar=True, metavar="TOKEN",
                        help="Bearer token (surrounding whitespace is stripped, as the server does).")


def json_option() -> Any:
    return typer.Option(False, "--json", help="Print the server's JSON answer instead of text.")


def clean_token(token: Optional[str]) -> Optional[str]:
    """The token as the server reads it: surrounding whitespace stripped; blank is none."""
    if token is None:
        return None
    return token.strip() or None


def call(method: str, url: str, path: str, token: Optional[str], body: Optional[dict] = None) -> dict:
    """One request to the server; its JSON answer, or :func:`fail` with one line."""
    import httpx

    token = clean_token(token)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {type(exc).__name__}: {exc}")
    except ValueError as exc:  # a malformed URL
        fail(f"bad --url {url!r}: {exc}")
    try:
        data = r.json()
    except ValueError:
        data = {"error": r.text[:300]}
    if r.status_code >= 400:
        hint = " (pass --token or set VIGIL_API_TOKEN)" if r.status_code == 401 else ""
        fail(f"{method} {path}: HTTP {r.status_code}: {data.get('error', data) if isinstance(data, dict) else data}"
             + hint)
    return data


def print_json(data: Any) -> None:
    """JSON on stdout, as the server sent it (indented)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
