"""``llmcache calibrate``: measure a semantic threshold on labelled pairs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llmcache.errors import ConfigError

__all__ = ["calibrate_command"]


@click.command("calibrate")
@click.option(
    "--pairs",
    "pairs_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON lines {"a", "b", "same"} (.gz read as gzip).',
)
@click.option("--embedder", default="wordllama", show_default=True, help="A registered embedder.")
@click.option(
    "--max-false-hits",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Target for the 95% upper bound on the false-hit rate.",
)
@click.option(
    "--verify-with",
    "verify_with",
    default=None,
    help="A second registered embedder that must agree (EmbedderAgreement); the threshold "
    "is then measured with it.",
)
@click.option(
    "--verify-threshold",
    default=0.9,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="The second embedder's least similarity.",
)
@click.option(
    "--out",
    default="calibration.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the calibration record.",
)
def calibrate_command(
    pairs_path: Path,
    embedder: str,
    max_false_hits: float,
    verify_with: str | None,
    verify_threshold: float,
    out: Path,
) -> None:
    """Pick the loosest semantic threshold whose 95% upper bound on false hits is within
    the target, and write the record that semantic={"calibration": ...} reads."""
    from llmcache.semantic.calibration import CalibrationError, calibrate
    from llmcache.semantic.verifiers import EmbedderAgreement

    verifier = EmbedderAgreement(verify_with, verify_threshold) if verify_with else None
    try:
        record = calibrate(pairs_path, embedder, max_false_hits=max_false_hits, verifier=verifier)
    except (CalibrationError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(record, indent=2, sort_keys=True)
    out.write_text(text + "\n", encoding="utf-8")
    click.echo(text)
    click.echo(
        f"threshold {record['threshold']:.4f}: precision {record['precision']:.4f}, recall "
        f"{record['recall']:.4f}, false hits <= {record['false_hit_upper_bound']:.4f} (95%), "
        f"on {record['pairs']} pairs; written to {out}"
    )
