"""Logging and progress through rich, to stderr; a command's results go to stdout. No log line holds a secret
(`distill.secrets`)."""

from __future__ import annotations

import logging
import os

from rich.console import Console
from rich.highlighter import ReprHighlighter
from rich.logging import RichHandler
from rich.text import Text

from distill.secrets import redact

HIGHLIGHT_MAX_CHARS = 2000  # rich's highlighting regexes are quadratic on a long word: longer lines stay plain
# One INFO line per HTTP request is noise: the openai client's httpx (and its fork, httpx2) say each one.
NOISY = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "openai",
    "urllib3",
    "filelock",
    "datasets",
    "sentence_transformers",
)


class BoundedHighlighter(ReprHighlighter):
    def highlight(self, text: Text) -> None:
        if len(text.plain) <= HIGHLIGHT_MAX_CHARS:
            super().highlight(text)


class RedactSecrets(logging.Filter):
    """Every record's message (and its exception's text) without the secrets `distill.secrets` knows."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = record.exc_text = None
        record.msg, record.args = redact(message), ()
        return True


console = Console(stderr=True, highlighter=BoundedHighlighter())  # logs and progress
stdout = Console(soft_wrap=True, highlight=False)  # a command's results: tables, JSON, paths (printed as they are)


def setup(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler = RichHandler(
        console=console, show_path=False, rich_tracebacks=False, highlighter=BoundedHighlighter(), markup=False
    )
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
