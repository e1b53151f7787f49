"""The CLI's query language (query_syntax.py): pure parsing, positions in every error."""

from __future__ import annotations

import re

import pytest

from pixsearch.query_syntax import ParsedTerm, QuerySyntaxError, is_plain, parse

ID = "0123456789abcdef"


def terms(query: str) -> list[tuple[str, str, float]]:
    return [(t.kind, t.value, t.weight) for t in parse(query)]


@pytest.mark.parametrize("query", ["a red car", "  a   red car ", "black-and-white photo", "C++ book",
                                   "don't panic", "2 dogs", "rock & roll", "5-star hotel"])
def test_plain_words_are_one_text_term_as_typed(query: str) -> None:
    assert terms(query) == [("text", " ".join(query.split()), 1.0)]
    assert is_plain(query)


@pytest.mark.parametrize("query", ["rock 'n' roll", 'the "best" dress', '"beach" "sea"', 'a "quote',
                                   "50 / 50 split"])
def test_what_does_not_parse_without_operators_stays_text_as_typed(query: str) -> None:
    assert terms(query) == [("text", " ".join(query.split()), 1.0)]


def test_the_issue_example() -> None:
    assert terms('"beach" + 0.5*./dog.jpg - "people"') == [
        ("text", "beach", 1.0), ("image", "./dog.jpg", 0.5), ("text", "people", -1.0)]


def test_ids_paths_weights_and_signs() -> None:
    query = f"-2*@id:{ID} + ~/a.png + ../b.jpg + /abs/c.webp + .5 * 'sunny day' - people in a crowd"
    assert terms(query) == [("id", ID, -2.0), ("image", "~/a.png", 1.0), ("image", "../b.jpg", 1.0),
                            ("image", "/abs/c.webp", 1.0), ("text", "sunny day", 0.5),
                            ("text", "people in a crowd", -1.0)]
    assert not is_plain(query)


def test_operators_touching_a_quote_or_weight() -> None:
    assert terms('"beach" -"people" +0.5*"sea"') == [("text", "beach", 1.0), ("text", "people", -1.0),
                                                     ("text", "sea", 0.5)]


def test_positions_are_one_based_term_starts() -> None:
    parsed = parse('"a" + 0.5*./x.jpg')
    assert [t.position for t in parsed] == [1, 7]
    assert parsed[1] == ParsedTerm("image", "./x.jpg", 0.5, 7)
    assert "position 7" in parsed[1].describe()


@pytest.mark.parametrize(("query", "position", "words"), [
    ("", 1, "empty query"),
    ('"beach" + "sea', 11, "unclosed"),
    ('"beach" + "sea" "x"', 17, "expected + or -"),
    ("./a.jpg ./b.jpg", 9, "expected + or -"),
    ('"beach" + - "sea"', 11, "two operators"),
    ('"beach" +', 9, "not followed by a term"),
    ("beach + @id:xyz", 9, "not an image id"),
    ('"beach" + 0.5*', 11, "weight must be followed"),
    ('"beach" + ""', 11, "empty quoted text"),
])
def test_errors_name_the_position(query: str, position: int, words: str) -> None:
    with pytest.raises(QuerySyntaxError, match=re.escape(words)) as err:
        parse(query)
    assert f"position {position}:" in str(err.value)
