"""Semantic matching: precision and recall on held-out pairs, edits served, lookup cost.

``python -m benchmarks.semantic --pairs qqp-pairs.jsonl.gz`` (or ``LLMCACHE_QQP_PAIRS``):

1. The labelled pairs are shuffled (fixed seed) and split in halves; llmcache's threshold is
   calibrated on the first half (``--max-false-hits``) and every rule is measured on the other
   half, on the same embedder: GPTCache's (last message, similarity >= 0.8), redisvl's and
   LiteLLM's (0.9), Portkey's (0.95), and llmcache's (its checks and calibrated threshold),
   with one-sided 95% Wilson upper bounds on the false-hit rate among served pairs.
2. The answer-changing edits (``--edits``): how many each rule would serve.
3. The cost of a semantic lookup on a miss with 100,000 questions in the partition (the
   embedder replaced by a table of precomputed vectors, so its time is apart), and the cost
   of an exact hit with and without semantic matching configured.

The results go to ``semantic.json`` and the "Semantic matching" section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from openai import OpenAI

from llmcache import CachedClient
from llmcache._plugins import get_registry
from llmcache.semantic.calibration import (
    CalibrationError,
    Pair,
    choose,
    evaluate,
    load_pairs,
    passes_checks,
    similarities,
    wilson_upper,
)
from llmcache.semantic.embedders import WordLlamaEmbedder
from llmcache.semantic.index import Member
from llmcache.semantic.verifiers import EmbedderAgreement
from llmcache.tools.simulator import Simulator

from .timing import percentile

HERE = Path(__file__).resolve().parent
EDITS = HERE.parent / "tests" / "data" / "answer-changing-edits-sample.jsonl"
AUDIT = HERE / "semantic-audit.jsonl"
SECTION = "## Semantic matching"
PEERS = [("GPTCache (last message, 0.8)", 0.8), ("redisvl / LiteLLM (0.9)", 0.9),
         ("Portkey (0.95)", 0.95)]  # fmt: skip
SEED = 7
RECALL = 0.21  # issue 16's target: precision >= 99% at this recall
VERIFIER = "minilm"  # the second embedder of the agreement policy
VERIFIER_FLOOR = 0.8  # the first embedder's threshold under that policy (GPTCache's)


def _rule(
    name: str, pairs: list[Pair], scores: Any, checked: list[bool], t: float
) -> dict[str, Any]:
    row = evaluate(pairs, scores, checked, t)
    row["rule"] = name
    return row


def for_recall(pairs: list[Pair], scores: Any, checked: list[bool], recall: float) -> float:
    """Return the highest threshold that reaches ``recall`` on these pairs (1.0 if none)."""
    positives = sum(p.same for p in pairs)
    ranked = sorted(
        (float(s) for p, s, ok in zip(pairs, scores, checked, strict=True) if ok and p.same),
        reverse=True,
    )
    needed = math.ceil(recall * positives)
    return ranked[needed - 1] if 0 < needed <= len(ranked) else 1.0


def agreement(
    pairs: list[Pair], scores: Any, checked: list[bool], verifier: EmbedderAgreement
) -> tuple[Any, list[bool]]:
    """Return the second embedder's similarities (-1 where not asked) and which pairs it is
    asked about: those passing the checks at the first embedder's floor."""
    asked = [ok and float(s) >= VERIFIER_FLOOR for s, ok in zip(scores, checked, strict=True)]
    second = np.full(len(pairs), -1.0, dtype=np.float32)
    rows = [i for i, a in enumerate(asked) if a]
    second[rows] = verifier.similarities([(pairs[i].a, pairs[i].b) for i in rows])
    return second, asked


def quality(
    pairs: list[Pair], embedder: Any, target: float, verifier: EmbedderAgreement | None = None
) -> dict[str, Any]:
    """Calibrate on one half, measure every rule on the other (``pairs`` come shuffled)."""
    half = len(pairs) // 2
    calibration, held_out = pairs[:half], pairs[half:]
    started = time.perf_counter()
    cal_scores = similarities(embedder, calibration)
    scores = similarities(embedder, held_out)
    embed_seconds = time.perf_counter() - started
    cal_checked = passes_checks(calibration)
    checked = passes_checks(held_out)
    unchecked = [True] * len(held_out)
    rows = [_rule(name, held_out, scores, unchecked, t) for name, t in PEERS]
    rows += [_rule(f"llmcache checks at {t}", held_out, scores, checked, t) for _, t in PEERS]
    at_recall = for_recall(calibration, cal_scores, cal_checked, RECALL)
    rows.append(
        _rule(
            f"llmcache checks, recall {RECALL} on calibration", held_out, scores, checked, at_recall
        )
    )
    second: dict[str, Any] = {}
    if verifier is not None:
        started = time.perf_counter()
        cal_second, cal_asked = agreement(calibration, cal_scores, cal_checked, verifier)
        held_second, held_asked = agreement(held_out, scores, checked, verifier)
        second = {
            "embedder": verifier.embedder.name,
            "floor": VERIFIER_FLOOR,
            "asked": sum(cal_asked) + sum(held_asked),
            "seconds": time.perf_counter() - started,
        }
        for _, t in PEERS[1:]:
            rows.append(
                _rule(
                    f"llmcache checks + {VERIFIER} >= {t} (first >= {VERIFIER_FLOOR})",
                    held_out, held_second, held_asked, t,
                )
            )  # fmt: skip
        second["threshold"] = for_recall(calibration, cal_second, cal_asked, RECALL)
        rows.append(
            _rule(
                f"llmcache checks + {VERIFIER}, recall {RECALL} on calibration",
                held_out, held_second, held_asked, second["threshold"],
            )
        )  # fmt: skip
    reached: dict[str, Any] = {"target": target}
    try:
        threshold = choose(calibration, cal_scores, cal_checked, target)
        rows.append(
            _rule(f"llmcache calibrated for {target}", held_out, scores, checked, threshold)
        )
        reached["threshold"] = threshold
    except CalibrationError as exc:
        reached["error"] = str(exc)
    # the tightest target the calibration half supports: the least upper bound reachable
    ranked = sorted(
        (
            (float(s), p.same)
            for p, s, ok in zip(calibration, cal_scores, cal_checked, strict=True)
            if ok
        ),
        key=lambda item: -item[0],
    )
    best, false_hits = (1.0, None), 0
    for served, (score, same) in enumerate(ranked, start=1):
        false_hits += not same
        if served >= 100:
            bound = wilson_upper(false_hits, served)
            if bound < best[0]:
                best = (bound, score)
    if best[1] is not None:
        reached["tightest_bound"], reached["tightest_threshold"] = best
        rows.append(
            _rule("llmcache at the tightest calibrated bound", held_out, scores, checked, best[1])
        )
    return {
        "pairs": len(pairs),
        "calibration_pairs": len(calibration),
        "held_out_pairs": len(held_out),
        "held_out_positives": sum(p.same for p in held_out),
        "embed_seconds": embed_seconds,
        "calibration": reached,
        "rules": rows,
        "label_noise": label_noise(pairs),
        "verifier": second,
    }


def _normal(text: str) -> str:
    text = re.sub(r"\s+([?.!,:;])", r"\1", " ".join(text.lower().split()))
    return text.rstrip(" ?.!")


def label_noise(pairs: list[Pair]) -> dict[str, int]:
    """Count pairs whose texts are identical once case, spaces and a final mark are set
    aside, and how many of them are labelled "not the same": false hits any matcher that
    served them would be charged."""
    same_text = [p for p in pairs if _normal(p.a) == _normal(p.b)]
    return {"identical": len(same_text), "labelled_different": sum(not p.same for p in same_text)}


def edits(
    path: Path,
    embedder: Any,
    threshold: float | None,
    verifier: EmbedderAgreement | None = None,
    verifier_threshold: float | None = None,
) -> dict[str, Any]:
    """Count the answer-changing edits each rule would serve."""
    pairs = load_pairs(path)
    scores = similarities(embedder, pairs)
    checked = passes_checks(pairs)
    out: dict[str, Any] = {"pairs": len(pairs)}
    if verifier is not None and verifier_threshold is not None:
        second, asked = agreement(pairs, scores, checked, verifier)
        out["llmcache_verified"] = int(
            sum(a and s >= verifier_threshold for s, a in zip(second, asked, strict=True))
        )
    for name, t in PEERS:
        out[name] = int(sum(s >= t for s in scores))
    loosest = min(t for _, t in PEERS)
    out["llmcache_checks_at_loosest"] = int(
        sum(ok and s >= loosest for s, ok in zip(scores, checked, strict=True))
    )
    out["loosest"] = loosest
    out["llmcache"] = int(
        sum(ok and s >= (threshold or 1.0) for s, ok in zip(scores, checked, strict=True))
    )
    out["llmcache_threshold"] = threshold
    out["at_or_above_loosest"] = int(sum(s >= loosest for s in scores))
    return out


class Table:
    """An embedder answering from precomputed vectors: the lookup's cost without its own."""

    name = WordLlamaEmbedder.name
    dim = WordLlamaEmbedder.dim

    def __init__(self, vectors: dict[str, Any]) -> None:
        self.vectors = vectors

    def embed(self, texts: list[str]) -> Any:
        return np.stack([self.vectors[t] for t in texts])


def lookup_cost(members: int, queries: int = 400) -> dict[str, Any]:
    """Time the semantic step of a miss with ``members`` questions in the partition."""
    rng = np.random.default_rng(SEED)
    dim = WordLlamaEmbedder.dim
    texts = [f"What is the status of order {n}?" for n in range(queries)]
    probes = rng.normal(size=(queries, dim)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    table = Table(dict(zip(texts, probes, strict=True)))
    with Simulator() as sim:
        openai = OpenAI(base_url=sim.base_url, api_key="sk-bench", max_retries=0)
        client = CachedClient(openai, semantic={"threshold": 0.9, "embedder": table})
        engine = client._engine
        matcher = client._core.semantic
        adapter = engine.adapter("chat.completions")

        def plan(text: str) -> Any:
            kwargs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
            return engine.planner.plan("chat.completions", kwargs)[1]

        partition = matcher._query(plan(texts[0])).partition
        index = matcher._index(partition)
        started = time.perf_counter()
        filler = rng.normal(size=(members, dim)).astype(np.float32)
        filler /= np.linalg.norm(filler, axis=1, keepdims=True)
        # every query has near questions that fail the checks (another order number)
        near = probes[np.arange(members) % queries] * 0.97 + filler * 0.03
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        for row in range(members):
            query = row % queries
            text = f"What is the status of order {query}{row}?"
            index.add(Member(f"k{row}", text, None), near[row])
        build = time.perf_counter() - started
        graph = index._graph is not None
        plans = [plan(t) for t in texts]
        times = []
        for p in plans:
            started = time.perf_counter()
            found = matcher.lookup(engine, p, adapter, False)
            times.append(time.perf_counter() - started)
            assert found is None
        embed = []
        for t in texts[:50]:
            started = time.perf_counter()
            table.embed([t])
            embed.append(time.perf_counter() - started)
        client.close()
    return {
        "members": members,
        "graph": graph,
        "build_seconds": build,
        "p50_ms": percentile(times, 0.5) * 1000,
        "p90_ms": percentile(times, 0.9) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "table_embed_p50_ms": percentile(embed, 0.5) * 1000,
    }


def exact_hits(rounds: int = 7, block: int = 2000) -> dict[str, float]:
    """Time exact hits with and without semantic matching configured, blocks alternating."""
    with Simulator() as sim:
        openai = OpenAI(base_url=sim.base_url, api_key="sk-bench", max_retries=0)
        plain = CachedClient(openai)
        semantic = CachedClient(openai, semantic={"threshold": 0.9})
        kwargs = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
        for client in (plain, semantic):
            client.chat.completions.create(**kwargs)
        out: dict[str, list[float]] = {"plain": [], "semantic": []}
        for _ in range(rounds):
            for name, client in (("plain", plain), ("semantic", semantic)):
                create = client.chat.completions.create
                started = time.perf_counter()
                for _ in range(block):
                    create(**kwargs)
                out[name].append((time.perf_counter() - started) / block)
        assert semantic.stats().semantic_hits == 0
        plain.close()
        semantic.close()
    return {name: percentile(values, 0.5) * 1e6 for name, values in out.items()}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(rules: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| rule | threshold | served | false hits | precision | false-hit bound | recall |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rules:
        lines.append(
            f"| {r['rule']} | {r['threshold']:.3f} | {r['served']:,} | {r['false_hits']:,} | "
            f"{_pct(r['precision'])} | {_pct(r['false_hit_upper_bound'])} | {r['recall']:.3f} |"
        )
    return lines


def _other_embedder(data: dict[str, Any]) -> list[str]:
    """Return the subsection of a run on another embedder and a sample of the pairs."""
    q, e = data["quality"], data["edits"]
    peers = ", ".join(f"{name}: {e[name]}" for name, _ in PEERS)
    return [
        "",
        f"### {data['embedder']}, {q['pairs']:,} pairs",
        "",
        f"`python -m benchmarks.semantic --embedder {data['name']} --limit {q['pairs']}` "
        f"({data['when']}): the first {q['pairs']:,} pairs of the same shuffle, halved the "
        f"same way ({q['held_out_pairs']:,} held out, {q['held_out_positives']:,} labelled "
        "the same).",
        "",
        *_table(q["rules"]),
        "",
        f"- Answer-changing edits served: llmcache **{e['llmcache_checks_at_loosest']}** "
        f"with its checks at {e['loosest']}; {peers}.",
    ]


def audit(path: Path = AUDIT) -> dict[str, int]:
    """Count the verdicts of the hand check of false hits (``semantic-audit.jsonl``: the
    data file's line of each pair, and whether the two questions ask the same thing)."""
    counts = {"duplicate": 0, "arguable": 0, "different": 0}
    if path.exists():
        for line in path.read_text().splitlines():
            counts[json.loads(line)["verdict"]] += 1
    return counts


def _target(q: dict[str, Any]) -> list[str]:
    """Return the bullets on issue 16's target: precision >= 99% at recall >= 0.21."""
    rows = {r["rule"]: r for r in q["rules"]}
    plain = rows[f"llmcache checks, recall {RECALL} on calibration"]
    out = [
        f"- Target: precision >= 99% (bound <= 2%) at recall >= {RECALL}, on pairs not used "
        f"for calibration. The threshold that gives recall {RECALL} on the calibration half "
        f"({plain['threshold']:.3f}) serves the held-out half at {_pct(plain['precision'])} "
        f"(bound {_pct(plain['false_hit_upper_bound'])}, recall {plain['recall']:.3f})."
    ]
    second = q.get("verifier") or {}
    name = f"llmcache checks + {VERIFIER}, recall {RECALL} on calibration"
    if not second or name not in rows:
        return out
    best = rows[name]
    out.append(
        f'- With a second embedder\'s agreement (`EmbedderAgreement("{VERIFIER}", '
        f"{second['threshold']:.3f})`, asked only about the {second['asked']:,} pairs that pass "
        f"the checks at >= {second['floor']}; {second['seconds']:.0f} s): "
        f"**{_pct(best['precision'])}** at recall {best['recall']:.3f} (bound "
        f"{_pct(best['false_hit_upper_bound'])}), against {_pct(plain['precision'])} without "
        f"it. The target is **{'met' if best['precision'] >= 0.99 else 'not met'}**. "
        f"{VERIFIER}'s model card lists 103,663 Quora question triplets, from the same release "
        "of Quora's pairs, among its training data: its figures here are likely better than "
        "on your own traffic."
    )
    verdicts = audit()
    checked = sum(verdicts.values())
    if 0 < checked <= best["false_hits"]:
        wrong = best["false_hits"] / best["served"]
        real = wrong * verdicts["different"] / checked
        arguable = wrong * (verdicts["different"] + verdicts["arguable"]) / checked
        out.append(
            f"- What stands between that row and the target: {checked} of its "
            f"{best['false_hits']:,} false hits, drawn at random and read by hand "
            "([semantic-audit.jsonl](semantic-audit.jsonl): the data file's line and the "
            f"verdict), are {verdicts['duplicate']} label errors (the two questions ask the "
            f"same thing), {verdicts['arguable']} arguable and {verdicts['different']} real "
            "different-answer pairs (a qualifier one of them adds, another named thing, a "
            "reversed relation, a number in words). Relabelled accordingly, the row's precision "
            f"would be about {_pct(1 - real)} ({_pct(1 - arguable)} counting the arguable ones "
            "as different): the rest of the gap to 99% is real false hits."
        )
    return out


def section(data: dict[str, Any]) -> str:
    """Return the "Semantic matching" section of ``RESULTS.md``."""
    q = data["quality"]
    lines = [
        SECTION,
        "",
        f"`python -m benchmarks.semantic` ({data['when']}, {data['machine']}). Embedder: "
        f"`{data['embedder']}` for every rule. {q['pairs']:,} labelled Quora question pairs, "
        f"shuffled (seed {SEED}) and halved: llmcache's threshold is calibrated on "
        f"{q['calibration_pairs']:,} pairs, and every rule below is measured on the other "
        f"{q['held_out_pairs']:,} ({q['held_out_positives']:,} labelled the same). *Bound*: "
        "one-sided 95% Wilson upper bound on the false-hit rate among served pairs.",
        "",
        *_table(q["rules"]),
    ]
    cal, noise, e = q["calibration"], q["label_noise"], data["edits"]
    lines += ["", f"- Target {cal['target']} on the bound: "]
    if "threshold" in cal:
        lines[-1] += f"threshold {cal['threshold']:.3f} on the calibration half."
    else:
        lines[-1] += (
            "**not reached** on these labels (no threshold's bound is within it on the "
            f"calibration half); the tightest bound reachable there is "
            f"{_pct(cal.get('tightest_bound', 1.0))}, at {cal.get('tightest_threshold', 1.0):.3f}."
        )
    wrong, identical = noise["labelled_different"], noise["identical"]
    low = 1 - wilson_upper(identical - wrong, identical)
    lines.append(
        f"- Label noise: {identical} pairs are the same text once case, spaces and a final "
        f"question mark are set aside, and {wrong} of them are labelled different "
        f"({_pct(wrong / max(1, identical))}; 95% lower bound {_pct(low)}). Every matcher "
        "is charged such label errors as false hits: a measured 99% at a recall of 0.21 "
        "would need the labels of the paraphrases it serves to be right more often than "
        "those of identical questions are."
    )
    lines += _target(q)
    peers = ", ".join(f"{name}: {e[name]}" for name, _ in PEERS)
    verified = (
        f", **{e['llmcache_verified']}** with the checks and {q['verifier']['embedder']} agreeing"
        if "llmcache_verified" in e
        else ""
    )
    lines.append(
        f"- Answer-changing edits ({e['pairs']} pairs: numbers, dates, units, directions, "
        f"order, negations, entities; {e['at_or_above_loosest']} of them score "
        f">= {e['loosest']}) served: llmcache **{e['llmcache_checks_at_loosest']}** with its "
        f"checks at {e['loosest']} and **{e['llmcache']}** at its calibrated threshold"
        f"{verified}; {peers}."
    )
    for c in data["lookup"]:
        lines.append(
            f"- Semantic lookup on a miss, {c['members']:,} questions in the partition "
            f"({'HNSW graph' if c['graph'] else 'exact numpy product'}), embedder time apart: "
            f"p50 **{c['p50_ms']:.3f} ms**, p90 {c['p90_ms']:.3f} ms, p99 {c['p99_ms']:.3f} ms "
            f"(index built in {c['build_seconds']:.1f} s)."
        )
    h = data["exact_hits"]
    lines.append(
        f"- Exact hit, memory tier, p50 of block means: {h['plain']:.1f} µs without semantic "
        f"matching, {h['semantic']:.1f} µs with it configured (the step never runs on a hit)."
    )
    for other in sorted(HERE.glob("semantic-*.json")):
        lines += _other_embedder(json.loads(other.read_text()))
    return "\n".join(lines) + "\n"


def rewrite_results(data: dict[str, Any], path: Path = HERE / "RESULTS.md") -> None:
    """Rewrite the "Semantic matching" section of ``RESULTS.md``."""
    text = path.read_text() if path.exists() else "# llmcache benchmark results\n"
    new = section(data)
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + new + ("\n" + text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Measure, write ``semantic.json`` and rewrite the section of ``RESULTS.md``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.semantic")
    parser.add_argument("--pairs", default=os.environ.get("LLMCACHE_QQP_PAIRS"))
    parser.add_argument("--edits", default=str(EDITS))
    parser.add_argument("--max-false-hits", type=float, default=0.01)
    parser.add_argument("--members", type=int, nargs="*", default=[50_000, 100_000])
    parser.add_argument("--embedder", default="wordllama", help="a registered embedder")
    parser.add_argument("--limit", type=int, help="use the first N pairs of the shuffle")
    parser.add_argument(
        "--verifier",
        default=VERIFIER,
        help="the second embedder of the agreement rows ('none' to leave them out)",
    )
    args = parser.parse_args(argv)
    if not args.pairs:
        parser.error("give --pairs FILE (JSON lines a, b, same) or set LLMCACHE_QQP_PAIRS")
    embedder = get_registry().embedder(args.embedder)()
    data: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "embedder": embedder.name,
        "name": args.embedder,
    }
    pairs = load_pairs(args.pairs)
    random.Random(SEED).shuffle(pairs)
    if args.limit:
        pairs = pairs[: args.limit]
    verifier = EmbedderAgreement(args.verifier) if args.verifier != "none" else None
    data["quality"] = quality(pairs, embedder, args.max_false_hits, verifier)
    print(json.dumps(data["quality"]["rules"], indent=1), flush=True)
    threshold = data["quality"]["calibration"].get(
        "threshold", data["quality"]["calibration"].get("tightest_threshold")
    )
    data["edits"] = edits(
        Path(args.edits),
        embedder,
        threshold,
        verifier,
        data["quality"]["verifier"].get("threshold"),
    )
    if args.embedder != "wordllama":  # quality only, beside the default embedder's run
        (HERE / f"semantic-{args.embedder}.json").write_text(json.dumps(data, indent=1) + "\n")
        print("\n".join(_other_embedder(data)))
        return 0
    data["lookup"] = [lookup_cost(n) for n in args.members]
    data["exact_hits"] = exact_hits()
    (HERE / "semantic.json").write_text(json.dumps(data, indent=1) + "\n")
    rewrite_results(data)
    print(section(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
