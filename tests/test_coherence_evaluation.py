"""Cross-domain coherence evaluation: the source roles, the held-out split, the metrics,
and a calibration fitted on data disjoint from the data it is tested on."""

import json
import zlib

import numpy as np
import pytest
import torch
from conftest import REPO

from embedder.coherence import PACKAGED_COHERENCE, Calibration, CoherenceScorer, load_base
from embedder.training.calibration import fit_calibration, store_calibration
from embedder.training.coherence import save_delta
from embedder.training.corpus import Document
from embedder.training.evaluation import (
    HELD_OUT,
    balanced_accuracy,
    balanced_mixture,
    chance_auc_band,
    document_filter,
    expected_calibration_error,
    labelled_pairs,
    model_record,
    roc_auc,
)
from embedder.training.sources import (
    CALIBRATION,
    PACKAGED_SOURCES,
    TEST,
    TRAIN,
    default_roots,
    source_path,
    sources,
)

STORY = ["My dog is cute.", "He likes playing.", "Every morning we walk to the park."]


def test_every_source_has_one_role_and_reserved_texts_are_absent():
    names = {role: {s.name for s in sources(role)} for role in (TRAIN, CALIBRATION, TEST)}
    assert names[TRAIN] and names[CALIBRATION] and names[TEST]
    assert not (names[TRAIN] & names[CALIBRATION] or names[TRAIN] & names[TEST]
                or names[CALIBRATION] & names[TEST])
    assert {s.kind for s in sources(TEST)} == {"prose", "docs"}  # both kinds tested
    everything = " ".join(f"{s.name} {s.path} {s.origin}" for s in sources()).lower()
    assert "austen" not in everything and "python" not in everything  # reserved


def test_the_packaged_calibration_was_fitted_on_calibration_sources_only():
    info = json.loads((PACKAGED_COHERENCE / "info.json").read_text())
    fitted_on = set(info["calibration"]["fitted_on"])
    trained_on, in_domain, _ = model_record(info)
    assert in_domain == trained_on == list(PACKAGED_SOURCES)
    assert fitted_on == {s.name for s in sources(CALIBRATION)}
    assert not fitted_on & {s.name for s in sources(TEST)}  # disjoint from the test data
    assert not fitted_on & set(trained_on)
    assert info["calibration"]["temperature"] > 0


def test_held_out_split_of_a_model_trained_on_absolute_paths():
    keys = [f"prose/book.txt#{i}" for i in range(400)]
    legacy = document_filter(HELD_OUT, "/tmp/data/")
    chosen = {k for k in keys if legacy(Document("x", [], k))}
    assert chosen == {k for k in keys if zlib.crc32(f"/tmp/data/{k}".encode()) % 50 == 0}
    current = {k for k in keys if document_filter(HELD_OUT)(Document("x", [], k))}
    assert chosen and current and chosen != current


def test_metrics_against_their_definitions():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 50).round(1), rng.normal(0, 1, 70).round(1)  # with ties
    u = mannwhitneyu(pos, neg).statistic
    assert roc_auc(pos, neg) == pytest.approx(u / (50 * 70))
    assert balanced_accuracy([0.6, 0.4], [0.2, 0.7]) == pytest.approx((0.5 + 0.5) / 2)
    # one bin holds everything: ECE = |mean prediction - frequency|
    assert expected_calibration_error([0.81, 0.82, 0.83], [1, 0, 1]) == pytest.approx(
        abs(0.82 - 2 / 3))
    assert expected_calibration_error([0.05, 0.95], [0, 1]) == pytest.approx(0.05)
    # random scores: the AUC lands within the chance band about 95 % of the time
    inside = np.mean([abs(roc_auc(rng.random(100), rng.random(100)) - 0.5)
                      <= chance_auc_band(100, 100) for _ in range(400)])
    assert 0.9 < inside < 0.99


def test_balanced_mixture_weighs_each_side_half():
    scores, labels, weights = balanced_mixture({
        "next": np.ones(10), "random": np.zeros(30), "same_document": np.zeros(5),
        "swapped": np.zeros(1)})
    assert weights[labels == 1].sum() == pytest.approx(0.5)
    assert weights[labels == 0].sum() == pytest.approx(0.5)
    assert weights[-1] == pytest.approx(0.5 / 3)  # the lone swapped pair: a sixth


@pytest.mark.parametrize("temperature, bias", [(2.5, 0.0), (0.6, 0.0), (1.7, -0.8)])
def test_fitted_calibration_recovers_the_true_one(temperature, bias):
    rng = np.random.default_rng(1)
    log_odds = rng.normal(0, 4, 20_000)
    truth = Calibration(temperature, bias)
    labels = (rng.random(20_000) < truth.probability(log_odds)).astype(float)
    fitted = fit_calibration(log_odds, labels, bias=bias != 0)
    assert fitted.temperature == pytest.approx(temperature, rel=0.06)
    assert fitted.bias == pytest.approx(bias, abs=0.08)
    # on fresh pairs (disjoint from the fit), calibration error falls
    fresh = rng.normal(0, 4, 20_000)
    fresh_labels = (rng.random(20_000) < truth.probability(fresh)).astype(float)
    raw = expected_calibration_error(Calibration().probability(fresh), fresh_labels)
    calibrated = expected_calibration_error(fitted.probability(fresh), fresh_labels)
    assert calibrated < 0.02 < raw


def test_a_stored_calibration_is_applied_by_the_scorer(tmp_path):
    model, _ = load_base()
    torch.manual_seed(0)
    with torch.no_grad():
        model.cls.seq_relationship.weight.normal_()
    folder = save_delta(model, tmp_path / "delta", layers=[5])
    store_calibration(folder, Calibration(3.0, 0.25), {"fitted_on": ["x"]})
    raw = CoherenceScorer.load(folder, calibrated=False)
    calibrated = CoherenceScorer.load(folder)
    pairs = list(zip(STORY, STORY[1:]))
    log_odds = raw.log_odds(pairs)
    assert np.allclose(calibrated.scores(pairs), 1 / (1 + np.exp(-(log_odds / 3 + 0.25))))
    assert np.allclose(raw.scores(pairs), 1 / (1 + np.exp(-log_odds)))


def test_pairs_of_each_kind_from_a_corpus(toy_corpus, encoder):
    pairs = labelled_pairs(toy_corpus, encoder.tokenizer, 8)
    assert {k: len(v) for k, v in pairs.items()} == {"next": 8, "random": 8,
                                                     "same_document": 8, "swapped": 8}
    assert pairs == labelled_pairs(toy_corpus, encoder.tokenizer, 8)  # deterministic
    none = labelled_pairs(toy_corpus, encoder.tokenizer, 8, documents=lambda d: False)
    assert not any(none.values())


def test_calibration_and_test_pairs_share_no_text(shared_data, encoder):
    """With the sources extracted (scripts/coherence_sources.py), the pairs that fit the
    calibration and those the benchmark tests on have no passage in common."""
    roots = default_roots(REPO)
    try:
        paths = {s.name: source_path(s, roots) for s in sources(CALIBRATION) + sources(TEST)}
    except Exception as exc:
        pytest.skip(f"coherence sources not extracted: {exc}")
    texts = {}
    for role in (CALIBRATION, TEST):  # passages with words (rulers of dashes are alike)
        texts[role] = {t for s in sources(role) for pairs in labelled_pairs(
            paths[s.name], encoder.tokenizer, 20).values() for pair in pairs for t in pair
            if sum(c.isalpha() for c in t) >= 20}
    assert texts[CALIBRATION] and texts[TEST]
    assert not texts[CALIBRATION] & texts[TEST]
    assert set(PACKAGED_SOURCES) <= {s.name for s in sources(TRAIN)}
