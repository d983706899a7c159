"""Fine-tuning a [CLS] classifier with a seeded tiny BERT; data errors; CLI."""

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from embedder.classifier import Classifier
from embedder.training.finetune import (
    DataError,
    FinetuneConfig,
    LabelledData,
    evaluate,
    finetune,
    macro_f1,
    read_labelled,
    split_data,
)

WORDS = {"positive": ["great", "wonderful", "love"], "negative": ["awful", "terrible", "hate"],
         "neutral": ["table", "window", "paper"]}
FILLER = ["the", "a", "this", "that", "it", "was", "is", "my", "our", "some"]


def toy_data(n=150, seed=0):
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = list(WORDS)[i % 3]
        words = rng.sample(FILLER, 4) + [rng.choice(WORDS[label])]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return LabelledData(texts, labels)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "model"
    train, evaluation = split_data(toy_data(300), 0.2, seed=0)
    config = FinetuneConfig(out=str(out), model=str(tiny_model_dir), epochs=6, batch_size=16,
                            lr=2e-3, warmup=0.05, max_length=16, seed=0)
    return finetune(train, evaluation, config), evaluation


def test_tiny_bert_learns_a_separable_task(trained):
    result, _ = trained
    best = result.epochs[result.best_epoch - 1]
    assert best.accuracy >= 0.9 and best.macro_f1 >= 0.9, best
    assert result.epochs[0].eval_loss > best.eval_loss
    assert result.labels == ["negative", "neutral", "positive"]


def test_saved_model_reloads_and_predicts_identically(trained):
    result, evaluation = trained
    classifier = Classifier.load(result.out)
    assert classifier.labels == result.labels  # the mapping round-trips by name
    first = classifier.probabilities(evaluation.texts)
    again = Classifier.load(result.out).probabilities(evaluation.texts)
    assert np.array_equal(first, again)
    accuracy, f1, _ = evaluate(classifier, evaluation)
    best = result.epochs[result.best_epoch - 1]
    assert accuracy == pytest.approx(best.accuracy) and f1 == pytest.approx(best.macro_f1)
    prediction = classifier.predict(["i love this wonderful thing"])[0]
    assert prediction.label == "positive"
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    report = json.loads((result.out / "finetune.json").read_text())
    assert report["best_epoch"] == result.best_epoch and len(report["epochs"]) >= 1


def test_unknown_label_at_evaluation_is_refused(trained):
    result, _ = trained
    with pytest.raises(DataError, match="'?sarcastic'? are not among|sarcastic"):
        evaluate(Classifier.load(result.out), LabelledData(["x"], ["sarcastic"]))


def test_macro_f1_by_hand():
    f1, per_class = macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert per_class == {"a": pytest.approx(2 / 3), "b": pytest.approx(0.8)}
    assert f1 == pytest.approx((2 / 3 + 0.8) / 2)


@pytest.mark.parametrize("name, content, message", [
    ("data.csv", "review,stars\ngood,5\n", "no column 'text'"),
    ("data.csv", "", "no rows"),
    ("data.jsonl", '{"text": "x", "label": "a"}\n{broken\n', "not valid JSON"),
    ("data.tsv", "text\tlabel\n\tpos\n", "Row 1"),
])
def test_bad_data_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labelled(path)


def test_single_class_and_unseen_eval_labels(tiny_model_dir, tmp_path):
    config = FinetuneConfig(out=str(tmp_path / "m"), model=str(tiny_model_dir), epochs=1)
    with pytest.raises(DataError, match="single class"):
        finetune(LabelledData(["a", "b"], ["x", "x"]), LabelledData(["c"], ["x"]), config)
    with pytest.raises(DataError, match="never occur"):
        finetune(LabelledData(["a", "b"], ["x", "y"]), LabelledData(["c"], ["z"]), config)


def test_readers_agree(tmp_path):
    (tmp_path / "d.tsv").write_text("text\tlabel\nhello there\tpos\n")
    (tmp_path / "d.csv").write_text('text,label\n"hello there",pos\n')
    (tmp_path / "d.jsonl").write_text('{"text": "hello there", "label": "pos"}\n')
    for name in ("d.tsv", "d.csv", "d.jsonl"):
        assert read_labelled(tmp_path / name) == LabelledData(["hello there"], ["pos"])


def test_cli_finetune_and_classify(tiny_model_dir, tmp_path):
    data = toy_data(60)
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps({"sentence": t, "sentiment": label})
                              for t, label in zip(data.texts, data.labels)))
    out = tmp_path / "clf"
    result = CliRunner().invoke(main, [
        "finetune", str(path), "--out", str(out), "--model", str(tiny_model_dir),
        "--text-column", "sentence", "--label-column", "sentiment", "--epochs", "2",
        "--batch-size", "16", "--max-length", "16", "--lr", "1e-3"])
    assert result.exit_code == 0, result.output
    assert "Saved" in result.output and "labels: negative, neutral, positive" in result.output
    result = CliRunner().invoke(main, ["classify", "--model", str(out), "--json", "love it"])
    row = json.loads(result.stdout)
    assert row["label"] in ("negative", "neutral", "positive")
    assert set(row["probabilities"]) == {"negative", "neutral", "positive"}
    bad = CliRunner().invoke(main, ["finetune", str(path), "--out", str(out), "--model",
                                    str(tiny_model_dir)])
    assert bad.exit_code == 1 and "no column 'text'" in bad.output
    assert bad.output.count("\n") == 1


def test_server_classify_route(trained, encoder, tmp_path):
    from fastapi.testclient import TestClient

    from server import ServerSettings, create_app

    result, _ = trained
    with TestClient(create_app(ServerSettings(classifier=str(result.out)),
                               encoder=encoder)) as client:
        body = client.post("/classify", json={"texts": ["i hate this awful day"]}).json()
        assert body["labels"] == result.labels
        assert body["results"][0]["label"] == "negative"
        assert client.post("/classify", json={"texts": []}).status_code == 422
    with TestClient(create_app(ServerSettings(), encoder=encoder)) as client:
        response = client.post("/classify", json={"texts": ["x"]})
        assert response.status_code == 501 and "--classifier" in response.json()["detail"]
