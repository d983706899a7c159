"""Sentiment fine-tuning on VADER's tweets vs two baselines, and transfer to Amazon reviews.

    python bench/finetune.py [--epochs 3] [--batch-size 32]

Tweets (`../shared/data/sentiment/tweets_GroundTruth.txt`), 3 classes: mean rating > 0.5
positive, < -0.5 negative, else neutral; a fixed 80/20 split (seed 0). In one run:
  - fine-tuned all-MiniLM-L6-v2 ([CLS] head, whole encoder trained);
  - baseline: frozen default encoder (mean-pooled embeddings) + logistic regression;
  - baseline: VADER's lexicon rule (compound > 0.05 positive, < -0.05 negative), if installed.
Then the tweet-trained models on the Amazon review sentences (same labelling).
"""

from __future__ import annotations

import argparse
import random
import tempfile

import numpy as np
from common import Timer, print_table, shared_data


def load(name: str):
    texts, labels = [], []
    path = shared_data() / "sentiment" / name
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        rating = float(parts[1])
        texts.append(parts[2].strip())
        labels.append("positive" if rating > 0.5 else "negative" if rating < -0.5 else "neutral")
    return texts, labels


def scores(gold, predicted, labels):
    from embedder.training.finetune import macro_f1

    accuracy = float(np.mean([g == p for g, p in zip(gold, predicted)]))
    return accuracy, macro_f1(gold, predicted, labels)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from embedder import Encoder
    from embedder.classifier import Classifier
    from embedder.training.finetune import FinetuneConfig, LabelledData, finetune

    texts, labels = load("tweets_GroundTruth.txt")
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    cut = int(0.8 * len(order))
    train = LabelledData([texts[i] for i in order[:cut]], [labels[i] for i in order[:cut]])
    test = LabelledData([texts[i] for i in order[cut:]], [labels[i] for i in order[cut:]])
    amazon = LabelledData(*load("amazonReviewSnippets_GroundTruth.txt"))
    classes = sorted(set(labels))
    print(f"tweets: {len(train.texts)} train / {len(test.texts)} test; amazon: "
          f"{len(amazon.texts)}; classes {classes}", flush=True)

    encoder = Encoder.load("default", device="cpu")
    with Timer() as frozen_time:
        logistic = LogisticRegression(max_iter=2000, C=1.0).fit(
            encoder.encode(train.texts), train.labels)
    frozen = {name: scores(data.labels, logistic.predict(encoder.encode(data.texts)), classes)
              for name, data in (("tweets", test), ("amazon", amazon))}

    out = tempfile.mkdtemp() + "/sentiment"
    config = FinetuneConfig(out=out, epochs=args.epochs, batch_size=args.batch_size,
                            lr=args.lr, max_length=128, seed=0)
    with Timer() as tuned_time:
        result = finetune(train, test, config, on_epoch=lambda r: print(
            f"epoch {r.epoch}: accuracy {r.accuracy:.3f}, macro-F1 {r.macro_f1:.3f}",
            flush=True))
    classifier = Classifier.load(out)
    tuned = {name: scores(data.labels, [p.label for p in classifier.predict(data.texts)],
                          classes) for name, data in (("tweets", test), ("amazon", amazon))}

    rows = [["fine-tuned MiniLM ([CLS] head)", *tuned["tweets"], *tuned["amazon"],
             tuned_time.seconds],
            ["frozen MiniLM + logistic regression (baseline)", *frozen["tweets"],
             *frozen["amazon"], frozen_time.seconds]]
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        vader = SentimentIntensityAnalyzer()

        def rule(text):
            compound = vader.polarity_scores(text)["compound"]
            return "positive" if compound > 0.05 else "negative" if compound < -0.05 \
                else "neutral"

        rows.append(["VADER lexicon rule (baseline)",
                     *scores(test.labels, [rule(t) for t in test.texts], classes),
                     *scores(amazon.labels, [rule(t) for t in amazon.texts], classes), 0.0])
    except ImportError:
        print("(VADER not installed: pip install vaderSentiment)")
    print()
    print_table(["model", "tweets accuracy", "tweets macro-F1", "amazon accuracy",
                 "amazon macro-F1", "train s"], rows)
    print(f"best epoch {result.best_epoch} of {args.epochs}")


if __name__ == "__main__":
    main()
