"""Prediction scores equal LLaMA-Factory's: values derived by hand for fixed pairs.

LLaMA-Factory scores with rouge_chinese over jieba's words (ROUGE-N over *sets* of n-grams,
F1 = 2PR/(P+R); ROUGE-L from the longest common subsequence) and nltk's sentence BLEU-4 over
characters with smoothing method 3; x100, rounded to 4 places. Each expected number below is
worked out from those definitions, not read back from our code.
"""

from __future__ import annotations

import math

import pytest

from tunedeck.runner.infer.metrics import pair_scores, score_pairs


def f1(p: float, r: float) -> float:
    return round(2 * p * r / (p + r) * 100, 4)


# Each case: the pair, then ROUGE-1, ROUGE-2, ROUGE-L as (precision, recall) and BLEU-4's
# brevity penalty as (label length, prediction length) in characters.
@pytest.mark.parametrize(
    ("prediction", "label", "rouge1", "rouge2", "rougel", "lengths"),
    [
        # words: {the, cat, sat} vs the set {the, cat, sat, on, mat}: P 3/3, R 3/5; bigrams
        # {the cat, cat sat} vs {the cat, cat sat, sat on, on the, the mat}: P 1, R 2/5; the LCS
        # of the word sequences is 3 of 3 and of 6 words. Characters: every n-gram of an
        # 11-character prefix is in the 22-character label, so the precisions are 1 and BLEU is
        # the brevity penalty exp(1 - 22/11).
        pytest.param("the cat sat", "the cat sat on the mat", (1, 3 / 5), (1, 2 / 5), (1, 3 / 6), (22, 11),
                     id="a-prefix-prediction"),
        # Chinese is segmented into words for ROUGE (jieba: 我 / 爱 / 北京 against
        # 我 / 爱 / 北京 / 天安门) and into characters for BLEU (4 of 7).
        pytest.param("我爱北京", "我爱北京天安门", (1, 3 / 4), (1, 2 / 3), (1, 3 / 4), (7, 4),
                     id="chinese-words-for-rouge-characters-for-bleu"),
    ],
)
def test_scores_are_the_values_worked_out_by_hand(
    prediction: str, label: str, rouge1: tuple[float, float], rouge2: tuple[float, float],
    rougel: tuple[float, float], lengths: tuple[int, int],
) -> None:
    label_chars, prediction_chars = lengths
    assert pair_scores(prediction, label) == pytest.approx({
        "rouge-1": f1(*rouge1), "rouge-2": f1(*rouge2), "rouge-l": f1(*rougel),
        "bleu-4": round(math.exp(1 - label_chars / prediction_chars) * 100, 4),
    }, abs=1e-4)


def test_identical_and_empty_predictions() -> None:
    assert pair_scores("hello world", "hello world") == {
        "rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0, "bleu-4": 100.0}
    empty = pair_scores("", "a real answer")
    assert empty == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}


def test_the_means_are_over_pairs() -> None:
    means = score_pairs([("hello world", "hello world"), ("", "a real answer")])
    assert means == {"bleu-4": 50.0, "rouge-1": 50.0, "rouge-2": 50.0, "rouge-l": 50.0}
