"""Caption metrics from the maintained COCO caption evaluation code (pycocoevalcap), and the official VQA
accuracy.

``caption_metrics`` scores as the COCO leaderboards do: the Stanford PTB tokenizer (Java), then BLEU-4 and
CIDEr-D (pycocoevalcap's ``Cider``). CIDEr-D weighs n-grams by their document frequency over the whole
reference corpus, so it is only meaningful over many images; for a single image it is 0.
"""

from __future__ import annotations

import functools
import re
import shutil
import warnings
from collections import defaultdict
from collections.abc import Hashable

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer


def caption_metrics(
    predictions: dict[str, str], references: dict[str, list[str]], require_java: bool = True
) -> dict[str, float]:
    """``{"bleu4", "cider_d", "exact_match"}`` of one predicted caption per image against its references;
    ``exact_match`` is the fraction of predictions equal to a reference after lowercasing, collapsing
    whitespace and dropping trailing periods.

    Args:
        predictions: image id -> predicted caption (may be empty).
        references: image id -> reference captions (at least one each); same keys as ``predictions``.
        require_java: without Java (needed by the PTB tokenizer) raise ``RuntimeError``; False: return
            ``exact_match`` alone with a warning (training loops on machines without a JRE).
    """
    _check_caption_inputs(predictions, references)
    keys = sorted(predictions)
    exact = [
        _normalize_caption(predictions[key]) in {_normalize_caption(r) for r in references[key]}
        for key in keys
    ]
    if shutil.which("java") is None:
        message = (
            "BLEU-4 and CIDEr-D need Java for pycocoevalcap's Stanford PTB tokenizer; install a JRE "
            "(e.g. `apt-get install default-jre-headless`) so that `java` is on PATH"
        )
        if require_java:
            raise RuntimeError(f"caption_metrics: {message}")
        warnings.warn(f"{message}; reporting exact_match alone", stacklevel=2)
        return {"exact_match": sum(exact) / len(exact)}
    texts: dict[Hashable, str] = {("prediction", key): predictions[key] for key in keys}
    texts |= {("reference", key, i): ref for key in keys for i, ref in enumerate(references[key])}
    tokens = _ptb_tokenize(texts)
    hypotheses = {key: [tokens[("prediction", key)]] for key in keys}
    gts = {key: [tokens[("reference", key, i)] for i in range(len(references[key]))] for key in keys}
    bleu, _ = Bleu(4).compute_score(gts, hypotheses, verbose=0)
    cider, _ = Cider().compute_score(gts, hypotheses)
    return {"bleu4": float(bleu[3]), "cider_d": float(cider), "exact_match": sum(exact) / len(exact)}


def _check_caption_inputs(predictions: dict[str, str], references: dict[str, list[str]]) -> None:
    if not predictions or not references:
        raise ValueError("caption_metrics needs at least one prediction and its references, got empty input")
    if predictions.keys() != references.keys():
        missing = sorted(map(str, references.keys() - predictions.keys()))
        extra = sorted(map(str, predictions.keys() - references.keys()))
        raise ValueError("predictions and references must have the same keys; "
                         f"no prediction for {missing[:5]}, no references for {extra[:5]}")
    for key, prediction in predictions.items():
        if not isinstance(prediction, str):
            raise ValueError(f"prediction for {key!r} must be a str, got {type(prediction).__name__}")
        refs = references[key]
        if not isinstance(refs, list | tuple) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references for {key!r} must be a non-empty list of str, got {refs!r}")


def _ptb_tokenize(texts: dict[Hashable, str]) -> dict[Hashable, str]:
    """Tokenizes every text in one Java call; empty texts stay empty without reaching Java."""
    # The tokenizer runs line by line: any line break inside a text (\r, \u2028...) would shift every
    # following result, so all whitespace runs become single spaces first.
    clean = {key: " ".join(text.split()) for key, text in texts.items()}
    batch = {key: [{"caption": text}] for key, text in clean.items() if text}
    tokenized = PTBTokenizer().tokenize(batch) if batch else {}
    if tokenized.keys() != batch.keys():
        raise RuntimeError("the PTB tokenizer (java) returned fewer lines than it was given; "
                           "is Java working?")
    return {key: tokenized[key][0] if key in tokenized else "" for key in clean}


def _normalize_caption(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(". ")


# The official answer normalisation (VQA v2 vqaEval.py: processPunctuation, processDigitArticle).
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'  # each character is one mark
_DIGIT_COMMA = re.compile(r"\d,\d")
# The official pattern "(?!<=\d)(\.)(?!\d)" has a malformed look-behind: it removes every period not
# followed by a digit, as this one does (it also passes re.UNICODE as the count, i.e. at most 32).
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS = {"none": "0"} | {
    word: str(value)
    for value, word in enumerate("zero one two three four five six seven eight nine ten".split())
}
_ARTICLES = frozenset({"a", "an", "the"})
# Contracted forms of the official table. It maps each spelling with exactly one apostrophe left out to
# the full form ("couldnt've" and "couldn'tve" -> "couldn't've"). Its identity entries ("let's") and
# capitalised keys ("Im", which never match lowercased text) change nothing and are not repeated.
_CONTRACTED = """
    ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
    he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've
    mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't
    shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's
    something'd something'd've something'll that's there'd there'd've there're there's they'd they'd've
    they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's
    where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't would've
    wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()
_CONTRACTIONS = {
    full[:i] + full[i + 1 :]: full for full in _CONTRACTED for i, char in enumerate(full) if char == "'"
}
_CONTRACTIONS["somebody'd"] = "somebodyd"  # sic: the official table maps this one backwards


@functools.lru_cache(maxsize=1 << 16)  # a training step normalises every human answer of each question
def normalize_answer(answer: str) -> str:
    """The official VQA answer processing: punctuation, number words to digits, articles, contractions.

    Example: ``normalize_answer("Two dogs!") == "2 dogs"``.
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    # A mark touching a space, or any text with a digit-comma-digit group, loses the mark; otherwise
    # the mark becomes a space ("black/white" -> "black white").
    glue = _DIGIT_COMMA.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        joined = glue or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if joined else " ")
    out = _PERIOD.sub("", out)
    words = [_NUMBERS.get(word, word) for word in out.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """The VQA v2 accuracy in [0, 1] of one predicted answer against the human ones (10 in VQA v2; >= 2).

    Each of the n leave-one-out subsets of the human answers scores ``min(matches / 3, 1)``; the result
    is their mean, so 4+ matching humans out of 10 give 1.0, 3 give 0.9, 1 gives 0.3. Unlike the
    official script, which normalises the human answers only partly and only when they disagree (the
    released VQA v2 answers are already normalised), both sides here always get ``normalize_answer``.
    """
    if isinstance(answers, str) or len(answers) < 2:
        raise ValueError(f"vqa_accuracy needs a list of at least 2 human answers, got {answers!r}")
    target = normalize_answer(prediction)
    matches = [normalize_answer(answer) == target for answer in answers]
    total = sum(matches)
    return sum(min(1.0, (total - left_out) / 3) for left_out in matches) / len(matches)


def vqa_scores(preds: list[str], answers: list[list[str]], question_types: list[str]) -> dict[str, float]:
    """Mean VQA accuracy, ``{"overall": ..., <question type>: ...}``, of one predicted answer per question
    against its human answers, per question type (e.g. "color", "yes/no")."""
    if not preds:
        raise ValueError("vqa_scores needs at least one prediction")
    if not len(preds) == len(answers) == len(question_types):
        raise ValueError(f"preds, answers and question_types must have the same length, "
                         f"got {len(preds)}, {len(answers)} and {len(question_types)}")
    if "overall" in question_types:
        raise ValueError("'overall' is reserved for the overall accuracy and cannot be a question type")
    per_type: dict[str, list[float]] = defaultdict(list)
    for pred, human, question_type in zip(preds, answers, question_types):
        per_type[question_type].append(vqa_accuracy(pred, human))
    scores = [score for values in per_type.values() for score in values]
    return {"overall": sum(scores) / len(scores)} | {t: sum(v) / len(v) for t, v in sorted(per_type.items())}
