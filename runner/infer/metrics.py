"""Text-similarity scores of generated predictions, computed the way LLaMA-Factory does.

LLaMA-Factory's ``ComputeSimilarity`` (its ``train/sft/metric.py``) and its
``scripts/eval_bleu_rouge.py`` score each (prediction, label) pair with:

- ROUGE-1/2/L F-measures of ``rouge_chinese`` over the words of ``jieba``'s segmentation
  (0 for all three when either side has no word);
- sentence BLEU-4 of ``nltk`` over *characters*, smoothed with ``SmoothingFunction().method3``;

each x100 and rounded to 4 places, then averaged over the pairs. We do the same, so a user
comparing our ``predict_results.json`` with theirs on the same predictions sees the same
numbers. ``jieba``, ``rouge-chinese`` and ``nltk`` come with the ``[train]`` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tunedeck.runner.errors import TunedeckError

METRIC_KEYS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
INSTALL_HINT = 'pip install "tunedeck[train]"  (jieba, rouge-chinese, nltk)'


def _libs() -> tuple[Any, Any, Any, Any]:
    try:
        import jieba
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge_chinese import Rouge
    except ImportError as exc:
        raise TunedeckError(f"scoring predictions needs {exc.name}", hint=INSTALL_HINT) from exc
    jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict" chatter goes to stderr otherwise
    return jieba, Rouge, SmoothingFunction, sentence_bleu


def pair_scores(predict: str, label: str) -> dict[str, float]:
    """The four scores (x100, 4 places) of one prediction against its label."""
    jieba, rouge_cls, smoothing, sentence_bleu = _libs()
    hypothesis = list(jieba.cut(predict))
    reference = list(jieba.cut(label))
    scores: dict[str, float] = {}
    if not " ".join(hypothesis).split() or not " ".join(reference).split():
        scores.update({"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0})
    else:
        result = rouge_cls().get_scores(" ".join(hypothesis), " ".join(reference))[0]
        scores.update({k: round(v["f"] * 100, 4) for k, v in result.items()})
    bleu = sentence_bleu([list(label)], list(predict), smoothing_function=smoothing().method3)
    scores["bleu-4"] = round(bleu * 100, 4)
    return scores


@dataclass
class SimilarityMeter:
    """Running means of the four scores; feed pairs as they are generated."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRIC_KEYS, 0.0))
    count: int = 0

    def add(self, predict: str, label: str) -> dict[str, float]:
        s = pair_scores(predict, label)
        for k in METRIC_KEYS:
            self.sums[k] += s[k]
        self.count += 1
        return s

    def means(self) -> dict[str, float]:
        if not self.count:
            return dict.fromkeys(METRIC_KEYS, 0.0)
        return {k: self.sums[k] / self.count for k in METRIC_KEYS}


def score_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Mean scores of (prediction, label) pairs, LLaMA-Factory's way."""
    meter = SimilarityMeter()
    for pred, label in pairs:
        meter.add(pred, label)
    return meter.means()
