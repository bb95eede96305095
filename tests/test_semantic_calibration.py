"""Calibration: the loosest threshold whose 95% upper bound on false hits is within target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmcache import CachedClient
from llmcache.semantic.calibration import (
    CalibrationError,
    Pair,
    calibrate,
    choose,
    load_pairs,
    wilson_upper,
)
from llmcache.tools.cli import main

PAIRS = Path(__file__).parent / "data" / "semantic-pairs.jsonl"


def test_wilson_upper_bound_matches_known_values() -> None:
    assert wilson_upper(0, 0) == 1.0
    assert wilson_upper(0, 100) == pytest.approx(0.02633, abs=1e-4)
    assert wilson_upper(5, 100) == pytest.approx(0.0999, abs=1e-3)
    assert wilson_upper(1, 1000) < 0.005 < wilson_upper(3, 1000)


def test_choose_takes_the_loosest_threshold_within_the_target() -> None:
    # 300 right pairs above 0.9, then a wrong one at 0.85, then 100 right ones
    pairs = [Pair("a", "b", True)] * 300 + [Pair("a", "c", False)] + [Pair("a", "b", True)] * 100
    scores = [0.95] * 300 + [0.85] + [0.8] * 100
    checked = [True] * len(pairs)
    assert choose(pairs, scores, checked, 0.012) == 0.8  # 1 in 401: bound 0.0111
    assert choose(pairs, scores, checked, 0.01) == 0.95  # 0 in 300: 0.0089; 1 in 401: 0.0111
    with pytest.raises(CalibrationError, match=r"within 0\.001"):
        choose(pairs, scores, checked, 0.001)
    # a pair the checks reject is never served, whatever its score
    assert choose(pairs, scores, [True] * 300 + [False] + [True] * 100, 0.01) == 0.8


def test_calibration_on_the_fixed_sample() -> None:
    record = calibrate(PAIRS, max_false_hits=0.1)
    assert record["pairs"] == 60
    assert record["positives"] == 30
    assert record["embedder"] == "wordllama"
    assert record["embedder_model"] == "wordllama-l2_supercat-256"
    assert 0.5 < record["threshold"] < 1.0
    assert record["false_hit_upper_bound"] <= 0.1
    assert record["precision"] == 1.0
    assert record["recall"] >= 0.8
    assert record["false_hits"] == 0


def test_an_unreachable_target_fails_naming_it() -> None:
    with pytest.raises(CalibrationError, match=r"within 0\.001"):
        calibrate(PAIRS, max_false_hits=0.001)


def test_the_command_prints_and_writes_the_record_a_client_reads(
    tmp_path: Path, openai_client: Any
) -> None:
    out = tmp_path / "calibration.json"
    result = CliRunner().invoke(
        main, ["calibrate", "--pairs", str(PAIRS), "--max-false-hits", "0.1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    for field in ("threshold", "precision", "recall", "false_hit_upper_bound", "pairs", "embedder"):
        assert field in record
    assert f"threshold {record['threshold']:.4f}" in result.output
    client = CachedClient(openai_client, semantic={"calibration": str(out)})
    assert client._core.semantic.config.threshold == record["threshold"]
    client.close()


def test_the_command_fails_clearly_on_bad_pairs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y", "same": true}\n{"a": "x"}\n')
    result = CliRunner().invoke(main, ["calibrate", "--pairs", str(bad)])
    assert result.exit_code != 0
    assert "bad.jsonl:2 is not a pair" in result.output
    result = CliRunner().invoke(main, ["calibrate", "--pairs", str(PAIRS), "--embedder", "nope"])
    assert result.exit_code != 0
    assert "unknown embedder 'nope'" in result.output
    assert len(load_pairs(PAIRS)) == 60


def test_a_verifier_is_part_of_what_calibration_measures(tmp_path: Path) -> None:
    from llmcache.semantic import EmbedderAgreement

    plain = calibrate(PAIRS, max_false_hits=0.1)
    assert plain["verifier"] is None
    verifier = EmbedderAgreement("minilm", 0.92)
    record = calibrate(PAIRS, max_false_hits=0.1, verifier=verifier)
    assert record["verifier"] == "minilm-all-MiniLM-L6-v2>=0.92"
    # a pair MiniLM scores below 0.92 is never served: fewer pairs are served, and recall drops
    assert record["served"] < plain["served"]
    assert record["recall"] < plain["recall"]
    assert record["false_hit_upper_bound"] <= 0.1
    # a plain callable works too, asked pair by pair; one that refuses all leaves no threshold
    with pytest.raises(CalibrationError, match=r"within 0\.1"):
        calibrate(PAIRS, max_false_hits=0.1, verifier=lambda a, b, similarity: False)
    out = tmp_path / "calibration.json"
    result = CliRunner().invoke(
        main,
        ["calibrate", "--pairs", str(PAIRS), "--max-false-hits", "0.1", "--out", str(out),
         "--verify-with", "minilm", "--verify-threshold", "0.92"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["verifier"] == record["verifier"]
