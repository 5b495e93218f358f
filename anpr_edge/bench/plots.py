"""Plots for docs/BENCHMARKS.md (matplotlib, optional: the ``bench`` extra). Never imported at run time.

``plot_sizes`` draws the detector input-size sweep of ``bench-sizes``: latency per image against the size
(left) and accuracy against the size (right). Without matplotlib it returns None and says how to install it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("anpr_edge.bench")

INSTALL = "pip install 'anpr-edge[bench]' (or: pip install matplotlib)"


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_sizes(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "") -> Path | None:
    """Write the size sweep as a PNG at ``path``; None (and a warning) without matplotlib.

    ``rows``: one per size, as ``sizes.SizeResult.as_dict()`` gives them: ``input_size``,
    ``detector_ms_median``, ``read_ms_median`` and ``sets`` ({set: {"recall", "exact_match"}}).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on edge boxes and CI
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no plot: matplotlib is not installed (%s)", INSTALL)
        return None
    rows = sorted(rows, key=lambda r: r["input_size"])
    sizes = [r["input_size"] for r in rows]
    figure, (latency, accuracy) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)

    def series(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]

    latency.plot(sizes, series("read_ms_median"), "o-", label="detector + crop + OCR (median)")
    latency.plot(sizes, series("detector_ms_median"), "s--", label="detector alone (median)")
    if any(r.get("read_ms_p95") is not None for r in rows):
        latency.plot(sizes, series("read_ms_p95"), "^:", color="grey", label="detector + crop + OCR (p95)")
    latency.set_xlabel("detector input size (px)")
    latency.set_ylabel("ms per image")
    latency.set_title("Latency per image")
    latency.set_xticks(sizes)
    latency.set_ylim(bottom=0)
    latency.grid(True, alpha=0.3)
    latency.legend(fontsize=8)

    names = sorted({name for r in rows for name in r.get("sets", {})})
    for name in names:
        recall = [100 * r["sets"][name]["recall"] if r["sets"].get(name, {}).get("recall") is not None
                  else float("nan") for r in rows]
        accuracy.plot(sizes, recall, "o-", label=f"recall: {name}")
    for name in names:
        exact = [r["sets"].get(name, {}).get("exact_match") for r in rows]
        if any(v is not None for v in exact):
            accuracy.plot(sizes, [float("nan") if v is None else 100 * v for v in exact], "D--", color="black",
                          label=f"end-to-end exact: {name}")
    accuracy.set_xlabel("detector input size (px)")
    accuracy.set_ylabel("%")
    accuracy.set_title("Detector recall@0.5 and end-to-end exact match")
    accuracy.set_xticks(sizes)
    accuracy.set_ylim(0, 102)
    accuracy.grid(True, alpha=0.3)
    accuracy.legend(fontsize=7, loc="lower right")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    plt.close(figure)
    log.info("wrote %s", target)
    return target
