"""The command line's query language: a weighted sum of texts, image files and indexed ids.

    pixsearch search '"beach" + 0.5*./dog.jpg - "people"'
    pixsearch search 'sunset + @id:0123456789abcdef - 0.3*"text overlay"'

A query is terms joined by ``+`` or ``-``; the first may carry a sign too. A term is

- a **text**: ``"quoted words"`` (or ``'single quotes'``), or bare words (``red car``);
- an **image file**: a path that starts with ``./``, ``../``, ``/`` or ``~`` (up to the next space;
  for a path with spaces use ``--image``);
- an **indexed image**: ``@id:`` and the 16 hex characters search results show;

optionally preceded by a weight and ``*`` (``0.5*./dog.jpg``, ``2*"red"``). ``+`` and ``-`` are
operators when they stand alone between spaces, or directly before a quote, a path, ``@id:`` or a
weight (``-"people"``); inside words (``black-and-white``, ``C++``) they are text. So a query
with no operators, quotes, paths or ids (``a red car``) is one text term, exactly as typed; so
is one that does not parse but holds no operator, weight or id (``rock 'n' roll``).

This module is pure (no files read, no model): ``parse`` returns ``ParsedTerm``s whose
positions let every error name the bad term; the CLI turns them into ``search`` terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .errors import PixsearchError

ID_PREFIX = "@id:"
PATH_STARTS = ("./", "../", "/", "~")
WEIGHT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*\*\s*")
Kind = Literal["text", "image", "id"]


class QuerySyntaxError(PixsearchError, ValueError):
    """A query the parser cannot read; the message gives the 1-based character position."""


@dataclass(frozen=True)
class ParsedTerm:
    kind: Kind
    value: str
    """The text, the path as typed, or the id."""
    weight: float
    position: int
    """1-based character position of the term's start (its weight, if any) in the query."""

    def describe(self) -> str:
        shown = self.value if len(self.value) <= 40 else self.value[:40] + "…"
        return f"term {shown!r} at position {self.position}"


def parse(query: str) -> list[ParsedTerm]:
    """The terms of *query*, weights signed; QuerySyntaxError names the position of what is wrong.

    A query that does not parse but has no operator, weight or id in it (``rock 'n' roll``,
    ``the "best" dress``) is one text term as typed, as every query was before this syntax."""
    try:
        return _Parser(query).terms()
    except QuerySyntaxError:
        if _looks_structured(query) or not query.strip():
            raise
        return [ParsedTerm("text", " ".join(query.split()), 1.0, 1)]


def _looks_structured(query: str) -> bool:
    """Whether some word of *query* is an operator, starts with a weight, is an @id: term, or names
    an image file (a path start and an extension: ``./a.jpg``, not ``50 / 50``)."""
    parser = _Parser(query)
    for match in re.finditer(r"\S+", query):
        word = match.group(0)
        if parser.is_operator(match.start()) or WEIGHT.match(word) or word.startswith(ID_PREFIX) \
                or (word.startswith(PATH_STARTS) and re.search(r"\.\w{2,5}$", word)):
            return True
    return False


def is_plain(query: str) -> bool:
    """True when *query* is one text term as typed (no operators, quotes, paths, ids or weights)."""
    parsed = parse(query)
    return len(parsed) == 1 and parsed[0].kind == "text" and parsed[0].weight == 1.0 \
        and parsed[0].value == " ".join(query.split())


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, message: str, at: int | None = None) -> QuerySyntaxError:
        where = self.pos if at is None else at
        return QuerySyntaxError(f"query syntax, position {where + 1}: {message} (see `pixsearch search --help`)")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def terms(self) -> list[ParsedTerm]:
        out: list[ParsedTerm] = []
        if self.at_end():
            raise self.fail("empty query: give words, an image path or an @id:")
        while True:
            sign = self.operator(required=bool(out))
            out.append(self.term(sign))
            if self.at_end():
                return out

    def is_operator(self, pos: int) -> bool:
        """A + or - at *pos* that joins terms (standalone, or before a quote, path, id or weight)."""
        if pos >= len(self.text) or self.text[pos] not in "+-":
            return False
        after = self.text[pos + 1:]
        return not after or after[0].isspace() or after[0] in "\"'" or after.startswith(PATH_STARTS) \
            or after.startswith(ID_PREFIX) or WEIGHT.match(after) is not None

    def operator(self, required: bool) -> float:
        self.skip_space()
        if self.is_operator(self.pos):
            sign = -1.0 if self.text[self.pos] == "-" else 1.0
            self.pos += 1
            if self.at_end():
                raise self.fail(f"'{self.text[self.pos - 1]}' is not followed by a term", self.pos - 1)
            if self.is_operator(self.pos):
                raise self.fail("two operators in a row")
            return sign
        if required:
            raise self.fail(f"expected + or - before {self.text[self.pos:self.pos + 20]!r}")
        return 1.0

    def term(self, sign: float) -> ParsedTerm:
        start = self.pos
        weight = 1.0
        match = WEIGHT.match(self.text, self.pos)
        if match:
            weight = float(match.group(0).rstrip().rstrip("*"))
            self.pos = match.end()
            if self.pos >= len(self.text) or (self.text[self.pos].isspace() and self.at_end()):
                raise self.fail("a weight must be followed by a term, e.g. 0.5*\"red\"", start)
        kind, value = self.atom()
        return ParsedTerm(kind, value, sign * weight, start + 1)

    def atom(self) -> tuple[Kind, str]:
        text, start = self.text, self.pos
        if text[start] in "\"'":
            end = text.find(text[start], start + 1)
            if end < 0:
                raise self.fail(f"unclosed {text[start]} quote", start)
            self.pos = end + 1
            value = " ".join(text[start + 1:end].split())
            if not value:
                raise self.fail("empty quoted text", start)
            return "text", value
        if text.startswith(ID_PREFIX, start):
            word = self.word()
            image_id = word[len(ID_PREFIX):]
            if not re.fullmatch(r"[0-9a-f]{16}", image_id):
                raise self.fail(f"{word!r} is not an image id (@id: and 16 hex characters, as search shows)",
                                start)
            return "id", image_id
        if text.startswith(PATH_STARTS, start):
            return "image", self.word()
        return "text", self.bare_words()

    def word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace():
            self.pos += 1
        return self.text[start:self.pos]

    def bare_words(self) -> str:
        """Words up to an operator, a quote, a path, an id or a weight (which need an operator first)."""
        words = [self.word()]
        while not self.at_end():
            rest = self.text[self.pos:]
            if self.is_operator(self.pos) or rest[0] in "\"'" or rest.startswith(PATH_STARTS) \
                    or rest.startswith(ID_PREFIX) or WEIGHT.match(rest):
                break
            words.append(self.word())
        return " ".join(words)
