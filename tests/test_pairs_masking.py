"""NSP pair construction (BERT's recipe + hard negatives) and MLM masking statistics."""

import collections
import random

import pytest
import torch

from embedder.inputs import truncate_for_continuation
from embedder.training.corpus import CorpusError, Document, read_documents, split_sentences
from embedder.training.masking import IGNORE, mask_tokens
from embedder.training.pairs import (
    HARD_NEGATIVES,
    IS_NEXT,
    NOT_NEXT,
    NegativeMix,
    PairBuilder,
    hf_next_sentence_label,
)

SENTENCE_TOKENS = 5


def toy_documents(n_docs=20, sentences=12):
    """Documents whose sentences are `d<doc>s<i>`; the fake tokenizer below turns sentence
    (doc, i) into 5 ids that encode both, so every token says where it came from."""
    return [Document(f"doc{d}", [f"d{d}s{i}" for i in range(sentences)]) for d in range(n_docs)]


def fake_tokenize(sentences):
    out = []
    for s in sentences:
        d, i = s[1:].split("s")
        out.append([1000 + int(d) * 100 + int(i)] * SENTENCE_TOKENS)
    return out


def origin(token):
    return divmod(token - 1000, 100)  # (doc, sentence)


def build(seed=0, negatives=NegativeMix(), max_length=40, documents=None, **kw):
    builder = PairBuilder(fake_tokenize, max_length, random.Random(seed), negatives=negatives,
                          **kw)
    return list(builder.pairs(documents or toy_documents()))


def test_hf_label_convention_is_the_opposite_of_the_lectures():
    assert (IS_NEXT, NOT_NEXT) == (1, 0)
    assert hf_next_sentence_label(IS_NEXT) == 0 and hf_next_sentence_label(NOT_NEXT) == 1


def test_pairs_are_deterministic_for_a_seed():
    assert build(seed=3) == build(seed=3)
    assert build(seed=3) != build(seed=4)


def test_is_next_pairs_continue_a_within_one_document_and_fit():
    pairs = build(short_seq_prob=0.0)
    assert pairs
    for pair in pairs:
        assert len(pair.ids_a) >= 1 and len(pair.ids_b) >= 1
        assert len(pair.ids_a) + len(pair.ids_b) <= 40 - 3
        a_doc, a_last = origin(pair.ids_a[-1])
        b_doc, b_first = origin(pair.ids_b[0])
        if pair.is_next == IS_NEXT:
            assert pair.kind == "next" and a_doc == b_doc
            # B starts where A ends (trimming may cut a partial sentence off either end)
            assert b_first in (a_last, a_last + 1)
        else:
            assert pair.kind == "random" and a_doc != b_doc


def test_labels_are_about_half_and_half():
    pairs = [p for seed in range(5) for p in build(seed=seed)]
    share = sum(p.is_next for p in pairs) / len(pairs)
    assert len(pairs) > 300 and 0.4 < share < 0.6, share


def test_some_sequences_are_deliberately_short():
    def mean_length(prob):
        lengths = [len(p.ids_a) + len(p.ids_b) for seed in range(3) for p in build(
            seed=seed, max_length=128, short_seq_prob=prob,
            documents=toy_documents(n_docs=10, sentences=90))]
        return sum(lengths) / len(lengths)

    full, short = mean_length(0.0), mean_length(1.0)  # 1.0: every target length is random
    assert short < 0.75 * full, (short, full)


def test_hard_negatives():
    pairs = [p for seed in range(4) for p in build(seed=seed, negatives=HARD_NEGATIVES,
                                                   trim="continuation")]
    kinds = collections.Counter(p.kind for p in pairs if p.is_next == NOT_NEXT)
    assert set(kinds) == {"random", "same_document", "swapped"}
    assert min(kinds.values()) > 0.2 * sum(kinds.values())
    for pair in pairs:
        (a_doc, a_first), (_, a_last) = origin(pair.ids_a[0]), origin(pair.ids_a[-1])
        (b_doc, b_first), (_, b_last) = origin(pair.ids_b[0]), origin(pair.ids_b[-1])
        if pair.kind == "same_document":
            assert a_doc == b_doc
            assert b_first >= a_last + 2 or b_last < a_first  # never A's continuation
        elif pair.kind == "swapped":
            assert a_doc == b_doc and a_first == b_last + 1  # (B, A) of a true pair


def test_one_document_is_a_clear_error():
    builder = PairBuilder(fake_tokenize, 40, random.Random(0))
    with pytest.raises(CorpusError, match="only one document"):
        list(builder.pairs(toy_documents(n_docs=1)))


def test_truncate_for_continuation_keeps_the_junction():
    a, b, removed = truncate_for_continuation(list(range(10)), list(range(100, 104)), 8)
    assert a == [6, 7, 8, 9] and b == [100, 101, 102, 103] and removed == 6


def test_corpus_reading(tmp_path):
    (tmp_path / "a.txt").write_text("First sentence here. Second one!\n\nA new paragraph")
    (tmp_path / ".hidden.txt").write_text("Secret. Text.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    docs = list(read_documents(tmp_path))
    assert [d.sentences for d in docs] == [["First sentence here.", "Second one!",
                                            "A new paragraph"]]
    assert split_sentences("One here. Two there!\nThree wraps\na line? 4 starts.\n\nnew") == [
        "One here.", "Two there!", "Three wraps a line?", "4 starts.", "new"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "holds no text files"),
])
def test_bad_corpus_paths(tmp_path, make, message):
    with pytest.raises(CorpusError, match=message):
        list(read_documents(make(tmp_path)))


def masked_statistics(seed=0, batch=64, seq=128):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch, seq), generator=generator)
    special = torch.zeros(batch, seq, dtype=torch.bool)
    special[:, 0] = True  # [CLS]
    lengths = torch.randint(20, seq, (batch,), generator=generator)
    for row, n in enumerate(lengths):
        special[row, n:] = True  # [SEP] and padding
    masked, labels = mask_tokens(ids, special, vocab_size=30522, mask_id=103,
                                 generator=torch.Generator().manual_seed(seed), prob=0.15,
                                 max_predictions=1000)
    return ids, special, lengths, masked, labels


def test_masking_follows_the_bert_recipe():
    ids, special, lengths, masked, labels = masked_statistics()
    chosen = labels != IGNORE
    assert not (chosen & special).any()  # specials and padding never chosen
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the originals
    assert torch.equal(masked[special], ids[special])  # specials untouched
    real = (~special).sum(dim=1)
    per_row = chosen.sum(dim=1)
    assert torch.equal(per_row, torch.clamp((real.float() * 0.15).round().long(), min=1))
    n = chosen.sum().item()
    as_mask = ((masked == 103) & chosen).sum().item() / n
    unchanged = ((masked == ids) & chosen).sum().item() / n
    replaced = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.04 and abs(unchanged - 0.1) < 0.03, (as_mask, unchanged)
    assert abs(replaced - 0.1) < 0.03
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes


def test_masking_cap_and_seed():
    ids, special, *_ = masked_statistics()
    _, labels = mask_tokens(ids, special, vocab_size=30522, mask_id=103,
                            generator=torch.Generator().manual_seed(1), max_predictions=5)
    assert ((labels != IGNORE).sum(dim=1) <= 5).all()
    again = mask_tokens(ids, special, vocab_size=30522, mask_id=103,
                        generator=torch.Generator().manual_seed(1), max_predictions=5)[1]
    assert torch.equal(labels, again)


def test_held_out_documents_do_not_depend_on_where_the_corpus_lies(tmp_path):
    """The evaluation split hashes a document's place in its corpus, not its absolute path:
    the same documents are held out on the machine that trains and the one that measures."""
    for where in ("a", "b/c"):
        folder = tmp_path / where / "books"
        folder.mkdir(parents=True)
        for d in range(120):
            (folder / f"d{d}.txt").write_text(f"Sentence one of {d}. Sentence two of {d}.")
    first = {d.key for d in read_documents(tmp_path / "a" / "books") if d.held_out}
    second = {d.key for d in read_documents(tmp_path / "b" / "c" / "books") if d.held_out}
    assert first and first == second
    assert all(key.startswith("books/d") for key in first)
