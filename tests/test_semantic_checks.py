"""The answer-token checks: an edit that changes the answer never passes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcache.semantic.checks import length_ok, same_answer_tokens, signature

EDITS = Path(__file__).parent / "data" / "answer-changing-edits-sample.jsonl"

numbers = st.integers(min_value=0, max_value=10**7)
templates = st.sampled_from(
    [
        "What is the status of order {}?",
        "Who won the World Series in {}?",
        "How do I read a CSV file in Python {}?",
        "Convert {} EUR to GBP",
        "How many liters is {} gallons?",
        "What happened on {} March?",
    ]
)


@settings(max_examples=200, deadline=None)
@given(templates, numbers, numbers)
def test_a_changed_number_never_passes(template: str, a: int, b: int) -> None:
    same = same_answer_tokens(template.format(a), template.format(b))
    assert same == (a == b)


@settings(max_examples=100, deadline=None)
@given(numbers, st.integers(min_value=1, max_value=9))
def test_digits_swapped_or_grouped_differently_are_told_apart(n: int, shift: int) -> None:
    a = f"What is the status of order {n}?"
    b = f"What is the status of order {n * 10 + shift}?"
    assert not same_answer_tokens(a, b)
    assert same_answer_tokens(f"Pay {n:,} USD now", f"Pay {n} USD now")


sentences = st.sampled_from(
    [
        "Is running a marathon without training {}safe?",
        "Is it {}possible to learn French in a year?",
        "Is ibuprofen with alcohol {}dangerous?",
        "Should I {}buy a house in 2025?",
    ]
)


@settings(max_examples=60, deadline=None)
@given(sentences, st.sampled_from(["not ", "never ", "un", "in", "no longer "]))
def test_a_negation_never_passes(template: str, negation: str) -> None:
    plain = template.format("")
    negated = template.format(negation)
    if negated.replace(" ", "") == plain.replace(" ", ""):
        return
    assert not same_answer_tokens(plain, negated)
    assert not same_answer_tokens(negated, plain)


currencies = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD"]
units = ["liters", "gallons", "inches", "centimeters", "miles", "kilometers", "pounds", "kg"]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(currencies), st.sampled_from(currencies), numbers)
def test_swapped_directions_never_pass(a: str, b: str, amount: int) -> None:
    if a == b:
        return
    assert not same_answer_tokens(f"Convert {amount} {a} to {b}", f"Convert {amount} {b} to {a}")
    assert not same_answer_tokens(f"How much is {a} in {b}?", f"How much is {b} in {a}?")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(units), st.sampled_from(units), numbers)
def test_changed_or_swapped_units_never_pass(a: str, b: str, amount: int) -> None:
    if a == b:
        return
    assert not same_answer_tokens(
        f"How many {a} is {amount} {b}?", f"How many {b} is {amount} {a}?"
    )
    assert not same_answer_tokens(
        f"What is {amount} {a} in {units[0]}?", f"What is {amount} {b} in {units[0]}?"
    )


@settings(max_examples=100, deadline=None)
@given(st.permutations(["ethanol", "acid", "water", "salt", "sugar"]))
def test_the_same_words_in_another_order_never_pass(order: list[str]) -> None:
    first = (
        "How do I turn "
        + " into ".join(["ethanol", "acid"])
        + " with "
        + " and ".join(["water", "salt", "sugar"])
    )
    words = iter(order)
    second = f"How do I turn {next(words)} into {next(words)} with {next(words)} and " + (
        f"{next(words)} and {next(words)}"
    )
    assert same_answer_tokens(first, second) == (
        order == ["ethanol", "acid", "water", "salt", "sugar"]
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Do you believe there is life after death?", "Do you believe there is death after life?"),
        ("What is the difference between C and C++?", "What is the difference between C and C#?"),
        ("What does = mean in Python?", "What does == mean in Python?"),
        ("Flights to Paris tomorrow", "Flights from Paris tomorrow"),
        ("Which came first, the Moon or Mars?", "Which came later, the Moon or Mars?"),
        ("Is Tokyo bigger than London?", "Is London bigger than Tokyo?"),
        ("Where was Mike Shinoda born?", "When was Mike Shinoda born?"),
        ('What does "foo" mean in Python?', 'What does "bar" mean in Python?'),
        ("What does https://a.example/x return?", "What does https://a.example/y return?"),
        ("Why does my_var_1 fail?", "Why does my_var_2 fail?"),
        ("What is the capital of Spain?", "What is the capital of Japan?"),
        ("Sort the list in ascending order", "Sort the list in descending order"),
    ],
)
def test_answer_changing_edits_fail(a: str, b: str) -> None:
    assert not same_answer_tokens(a, b)
    assert not same_answer_tokens(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How can I lose weight fast?", "How can I lose weight quickly?"),
        ("How do I learn Python?", "How do I learn python quickly?"),
        ("What is the status of order 48213?", "what's the status of order 48213"),
        ("Convert 1,000 EUR to GBP", "Please convert 1000 EUR to GBP"),
    ],
)
def test_paraphrases_keeping_the_tokens_pass(a: str, b: str) -> None:
    assert same_answer_tokens(a, b)


def test_no_pair_of_the_shared_edit_sample_passes() -> None:
    pairs = [json.loads(line) for line in EDITS.read_text().splitlines() if line.strip()]
    assert len(pairs) == 30
    passed = [p for p in pairs if same_answer_tokens(p["a"], p["b"])]
    assert passed == []


def test_the_length_bound_rejects_a_much_longer_question() -> None:
    assert length_ok("What is a cat?", "What is a  cat ?", 1.2)
    assert not length_ok("What is a cat?", "What is a cat, and how do cats see at night?", 2.0)
    assert signature("a  b\tc").length == 5
