"""Coherence scoring: the scorer's contract, reading order, packaging, and the real default
model on held-out text."""

import itertools

import numpy as np
import pytest
import torch

from embedder import InvalidInputError, ModelLoadError
from embedder.coherence import (
    Calibration,
    CoherenceScorer,
    Position,
    best_path,
    chain_coherence,
    coherence_scores,
    coherent_order,
    load_base,
)
from embedder.inputs import truncate_for_continuation
from embedder.training.coherence import save_delta

STORY = ["My dog is cute.", "He likes playing.", "Every morning we walk to the park.",
         "There he chases the ducks until he is tired."]


@pytest.fixture(scope="module")
def tiny_scorer(tiny_model_dir):
    return CoherenceScorer.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def default_scorer():
    return CoherenceScorer.load(device="cpu")


def test_scores_are_probabilities_deterministic_and_batch_independent(tiny_scorer):
    pairs = list(itertools.permutations(STORY, 2))
    scores = tiny_scorer.scores(pairs, batch_size=5)
    assert scores.shape == (12,) and ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(scores, tiny_scorer.scores(pairs, batch_size=5))
    single = np.array([tiny_scorer.scores([p])[0] for p in pairs])
    assert np.allclose(scores, single, atol=1e-6)
    assert np.allclose(tiny_scorer.scores(pairs[::-1]), scores[::-1], atol=1e-6)


def test_scores_are_the_nsp_heads_probabilities_from_transformers(tiny_scorer):
    pairs = list(itertools.permutations(STORY, 2))
    inputs = tiny_scorer.tokenizer([a for a, _ in pairs], [b for _, b in pairs],
                                   padding=True, return_tensors="pt")
    with torch.inference_mode():  # the padded Hugging Face forward pass, an oracle
        logits = tiny_scorer.model(**inputs).seq_relationship_logits
    expected = torch.softmax(logits, dim=-1)[:, 0].numpy()
    assert tiny_scorer._runner.packs  # the scorer runs packed: the two paths must agree
    assert np.allclose(tiny_scorer.scores(pairs), expected, atol=1e-5)


def test_long_pairs_keep_the_end_of_a_and_the_start_of_b(tiny_scorer):
    head = " ".join(f"alpha{i}" for i in range(200))
    a, b = head + " the end of a", "the start of b " + " ".join(["omega"] * 200)
    tok = tiny_scorer.tokenizer
    ids_a, ids_b, removed = truncate_for_continuation(
        tok(a, add_special_tokens=False)["input_ids"],
        tok(b, add_special_tokens=False)["input_ids"], tiny_scorer.max_length - 3)
    assert removed > 0 and tok.decode(ids_a).endswith("the end of a")
    assert tok.decode(ids_b).startswith("the start of b")
    kept = tiny_scorer.scores([(tok.decode(ids_a), tok.decode(ids_b))])
    assert np.allclose(tiny_scorer.scores([(a, b)]), kept, atol=1e-5)


def test_chain_and_order(tiny_scorer):
    chain = tiny_scorer.chain_coherence(STORY)
    pairs = tiny_scorer.scores(list(zip(STORY, STORY[1:])))
    assert np.allclose(chain.pair_scores, pairs)
    assert chain.weakest_link == int(np.argmin(pairs)) and chain.mean == pytest.approx(pairs.mean())
    order = tiny_scorer.coherent_order(STORY)
    assert sorted(order.order) == [0, 1, 2, 3] and len(order.pair_scores) == 3
    matrix = tiny_scorer.score_matrix(STORY)
    best = max(itertools.permutations(range(4)),
               key=lambda p: sum(np.log(matrix[a, b]) for a, b in zip(p, p[1:])))
    assert order.order == list(best)


def test_read_gives_chain_and_order_from_one_matrix(tiny_scorer):
    chain, order = tiny_scorer.read(STORY)
    assert np.allclose(chain.pair_scores, tiny_scorer.chain_coherence(STORY).pair_scores)
    assert order == tiny_scorer.coherent_order(STORY)
    long_chain, none = tiny_scorer.read(STORY * 4)  # 16 passages: no exact order
    assert none is None and len(long_chain.pair_scores) == 15


# passages of two documents, as search hits come: rank order, not document order
HITS = ["Chapter two begins.", "The harbour at dawn.", "Chapter one ends here.",
        "Chapter three closes the book.", "Boats leave the harbour."]
HIT_PLACES = [Position("book", 2), Position("port", 0), Position("book", 1),
              Position("book", 7), Position("port", 3)]


def test_hits_of_one_document_are_read_in_document_order(tiny_scorer):
    order = tiny_scorer.coherent_order(HITS, HIT_PLACES)
    book = [i for i in order.order if HIT_PLACES[i].document == "book"]
    port = [i for i in order.order if HIT_PLACES[i].document == "port"]
    assert book == [2, 0, 3] and port == [1, 4]  # by ordinal: known, whatever NSP says
    assert order.order in ([2, 0, 3, 1, 4], [1, 4, 2, 0, 3])  # one run per document
    kinds = [link.kind for link in order.links]
    assert kinds.count("scored") == 1 and kinds.count("document") == 3
    assert all(link.score == 1.0 for link in order.links if link.kind == "document")
    # NSP decides only between the runs: the junction with the higher P(next) wins
    book_then_port, port_then_book = tiny_scorer.scores([(HITS[3], HITS[1]),
                                                         (HITS[4], HITS[2])])
    expected = [2, 0, 3, 1, 4] if book_then_port >= port_then_book else [1, 4, 2, 0, 3]
    assert order.order == expected
    junction = order.links[[link.kind for link in order.links].index("scored")]
    assert junction.score == pytest.approx(max(book_then_port, port_then_book))


def test_chain_links_of_one_document_are_known_not_scored(tiny_scorer):
    chain, order = tiny_scorer.read(HITS, HIT_PLACES)
    # book#2, port#0, book#1, book#7, port#3: only book#1 -> book#7 lies in one document
    assert [link.kind for link in chain.links] == ["scored", "scored", "document", "scored"]
    chain = tiny_scorer.chain_coherence(HITS[2:4] + HITS[:1], HIT_PLACES[2:4] + HIT_PLACES[:1])
    # book#1 -> book#7: after it in the book (1.0); book#7 -> book#2: before it (0.0)
    assert [(link.kind, link.score) for link in chain.links] == [("document", 1.0),
                                                                ("document", 0.0)]
    assert chain.pair_scores == [1.0, 0.0] and chain.weakest_link == 1


def test_order_is_exact_for_up_to_12_documents_however_many_passages(tiny_scorer):
    passages = [f"Passage {i} of document {i % 3}." for i in range(20)]
    places = [Position(f"doc{i % 3}", 20 - i) for i in range(20)]
    chain, order = tiny_scorer.read(passages, places)
    assert order is not None and sorted(order.order) == list(range(20))
    for document in ("doc0", "doc1", "doc2"):
        run = [i for i in order.order if places[i].document == document]
        assert [places[i].ordinal for i in run] == sorted(places[i].ordinal for i in run)
    assert sum(link.kind == "scored" for link in order.links) == 2


def test_without_positions_every_link_is_scored(tiny_scorer):
    chain, order = tiny_scorer.read(STORY)
    assert {link.kind for link in chain.links + order.links} == {"scored"}
    assert chain.pair_scores == [link.score for link in chain.links]
    with pytest.raises(InvalidInputError, match="one Position per passage"):
        tiny_scorer.read(STORY, HIT_PLACES)


def test_calibration_rescales_the_heads_log_odds(tiny_model_dir, tiny_scorer):
    pairs = list(zip(STORY, STORY[1:]))
    log_odds = tiny_scorer.log_odds(pairs)
    raw = tiny_scorer.scores(pairs)
    assert np.allclose(raw, 1 / (1 + np.exp(-log_odds)))
    hot = CoherenceScorer(tiny_scorer.model, tiny_scorer.tokenizer, name="t",
                          calibration=Calibration(temperature=4.0, bias=0.5))
    assert np.allclose(hot.scores(pairs), 1 / (1 + np.exp(-(log_odds / 4 + 0.5))))
    assert Calibration.of({"calibration": {"temperature": 2.0}}) == Calibration(2.0, 0.0)
    assert Calibration.of({}) == Calibration()


@pytest.mark.parametrize("seed", range(5))
def test_best_path_is_the_brute_force_optimum(seed):
    weights = np.random.default_rng(seed).normal(size=(6, 6))
    brute = max(itertools.permutations(range(6)),
                key=lambda p: sum(weights[a, b] for a, b in zip(p, p[1:])))
    assert best_path(weights) == list(brute)


@pytest.mark.parametrize("call, args, message", [
    ("scores", [[("a", "")]], "empty passage"),
    ("scores", [["ab"]], "two strings"),
    ("chain_coherence", [["only one"]], "at least 2"),
    ("chain_coherence", ["a string"], "not a single string"),
    ("coherent_order", [[f"p{i}" for i in range(13)]], "at most 12"),
    ("chain_coherence", [["a", "b"], [Position("d", 0)]], "one Position per passage"),
])
def test_bad_input(tiny_scorer, call, args, message):
    with pytest.raises(InvalidInputError, match=message):
        getattr(tiny_scorer, call)(*args)


def test_a_model_without_an_nsp_head_is_refused(encoder, tmp_path):
    encoder.model.save_pretrained(tmp_path)
    encoder.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no trained next-sentence-prediction head"):
        CoherenceScorer.load(tmp_path)


def test_delta_round_trip(tmp_path):
    model, tokenizer = load_base()
    torch.manual_seed(0)
    with torch.no_grad():
        model.cls.seq_relationship.weight.normal_()
        model.bert.encoder.layer[5].output.dense.bias.add_(0.01)
    folder = save_delta(model, tmp_path / "delta", layers=[5])
    loaded = CoherenceScorer.load(folder)
    in_memory = CoherenceScorer(model, tokenizer, name="mem")
    pairs = list(zip(STORY, STORY[1:]))
    assert np.allclose(loaded.scores(pairs), in_memory.scores(pairs), atol=2e-3)  # fp16
    assert (folder / "delta.safetensors").stat().st_size < 4_000_000
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.bias.add_(0.01)  # outside the delta
    with pytest.raises(ModelLoadError, match="outside the exported layers"):
        save_delta(model, tmp_path / "bad", layers=[5])


# -- the packaged default model ------------------------------------------------------------

def test_default_model_is_small_and_loads_lazily():
    from embedder.coherence import DELTA_FILE, PACKAGED_COHERENCE

    assert (PACKAGED_COHERENCE / DELTA_FILE).stat().st_size <= 10 * 1024 * 1024


def test_default_model_on_the_lectures_example(default_scorer):
    right, unrelated = default_scorer.scores([
        ("My dog is cute.", "He likes playing."),
        ("My dog is cute.", "The kernel maps each page table entry to a physical frame.")])
    assert right > 0.5 > unrelated


def test_module_functions_use_the_default(default_scorer):
    pairs = list(zip(STORY, STORY[1:]))
    assert np.allclose(coherence_scores(pairs), default_scorer.scores(pairs), atol=1e-6)
    assert chain_coherence(STORY).pair_scores == pytest.approx(list(coherence_scores(pairs)))
    assert sorted(coherent_order(STORY).order) == [0, 1, 2, 3]


# measured on 400 + 400 held-out pairs each (bench/coherence.py): AUC 0.975 / 0.851 / 0.794
@pytest.mark.parametrize("kind, min_auc", [
    ("random", 0.9), ("same_document", 0.72), ("swapped", 0.65)])
def test_default_model_ranks_true_next_passages_above_negatives(default_scorer, shared_data,
                                                                kind, min_auc):
    """Held-out documents (never trained on): true continuations vs one kind of negative."""
    from embedder.training.pairs import NegativeMix
    from embedder.training.pretrain import PairStream, PretrainConfig

    mix = NegativeMix(**{k: float(k == kind) for k in ("random", "same_document", "swapped")})
    config = PretrainConfig(corpus=[str(shared_data / "prose"),
                                    str(shared_data / "linux-docs")], out="unused",
                            negatives=mix, trim="continuation", max_length=128,
                            short_seq_prob=0.0)
    stream = iter(PairStream(config, default_scorer.tokenizer, split="eval"))
    # (a pair that can't get this kind of negative falls back to a random one: skipped)
    pairs = [p for p in itertools.islice(stream, 200) if p.kind in ("next", kind)][:160]
    tok = default_scorer.tokenizer
    scores = default_scorer.scores([(tok.decode(p.ids_a), tok.decode(p.ids_b)) for p in pairs])
    labels = np.array([p.is_next for p in pairs])
    assert labels.sum() > 40 and (1 - labels).sum() > 40
    positives, negatives = scores[labels == 1], scores[labels == 0]
    auc = (positives[:, None] > negatives[None, :]).mean()
    assert auc > min_auc, auc
    if kind == "random":
        assert ((scores >= 0.5) == (labels == 1)).mean() > 0.8
