"""Coherence from the CLI, the server and an index's own adapted model."""

import json
import shutil

import pytest
from click.testing import CliRunner
from conftest import write_corpus
from fastapi.testclient import TestClient

from cli import main
from embedder.training.coherence import train_coherence
from indexer import ChunkSettings, build_index
from indexer.coherence import (
    coherence_model_dir,
    coherence_pairs,
    coherence_training_set,
    held_out_documents,
)
from indexer.store import PassageRow, open_store
from server import ServerSettings, create_app

STORY = ["My dog is cute.", "He likes playing.", "Every morning we walk to the park."]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, encoder):
    root = tmp_path_factory.mktemp("coherence")
    docs = write_corpus(root / "docs", 40, paragraphs=6)
    build_index(docs, root / "idx", encoder, chunk=ChunkSettings(40, 8))
    return root / "idx"


def test_cli_scores_texts_and_files(tmp_path):
    result = CliRunner().invoke(main, ["coherence", *STORY])
    assert result.exit_code == 0, result.output
    assert "1 -> 2: P(next) = " in result.output and "suggested order:" in result.output
    path = tmp_path / "passages.txt"
    path.write_text("\n\n".join(STORY))
    as_json = CliRunner().invoke(main, ["coherence", "--file", str(path), "--json"])
    body = json.loads(as_json.output)
    assert len(body["coherence"]["pair_scores"]) == 2
    assert sorted(body["reading_order"]["order"]) == [0, 1, 2]


def test_query_with_coherence(index_dir):
    result = CliRunner().invoke(main, ["query", "river mountain", "--index", str(index_dir),
                                       "-k", "4", "--coherence"])
    assert result.exit_code == 0, result.output
    assert "Coherence of consecutive hits" in result.output
    assert "Suggested reading order:" in result.output
    body = json.loads(CliRunner().invoke(main, ["query", "river", "--index", str(index_dir),
                                                "-k", "3", "--coherence", "--json"]).output)
    assert len(body["hits"]) == 3 and len(body["coherence"]["pair_scores"]) == 2


def test_server_coherence_routes(encoder, index_dir):
    with TestClient(create_app(ServerSettings(index_dir=str(index_dir)),
                               encoder=encoder)) as client:
        body = client.post("/coherence", json={"passages": STORY}).json()
        assert len(body["coherence"]["pair_scores"]) == 2
        assert 0 <= body["coherence"]["mean"] <= 1
        assert sorted(body["reading_order"]["order"]) == [0, 1, 2]
        assert client.post("/coherence", json={"passages": ["one"]}).status_code == 422
        many = [f"Passage {i} is about the river." for i in range(13)]
        long_chain = client.post("/coherence", json={"passages": many})
        assert long_chain.status_code == 200  # up to 64 passages; no order past 12
        assert len(long_chain.json()["coherence"]["pair_scores"]) == 12
        assert long_chain.json()["reading_order"] is None
        found = client.post("/search", json={"query": "river", "k": 3, "coherence": True}).json()
        assert len(found["coherence"]["pair_scores"]) == 2
        assert sorted(found["reading_order"]["order"]) == [0, 1, 2]


def test_held_out_documents_are_a_fixed_share_wherever_the_folder_lies():
    def rows(root, n):
        return [PassageRow(i, i, root, f"doc{i:03d}.txt", 0, 0, 1, 1, 1, "x") for i in range(n)]

    held = held_out_documents(rows("/data/a", 40), 0.1)
    assert len(held) == 4
    assert held_out_documents(rows("/tmp/pytest-106/b", 40), 0.1) == held  # path-independent
    assert len(held_out_documents(rows("/r", 3), 0.1)) == 1  # at least one to measure on
    assert held_out_documents(rows("/r", 1), 0.1) == set()


def test_pairs_from_an_index_drop_the_overlap(index_dir):
    store = open_store(index_dir)
    try:
        train, held_out = coherence_pairs(store)
        doc_id = next(store.iter_documents())[0]
        first, second = store.document_passages(doc_id)[:2]
    finally:
        store.close()
    kinds = {p.kind for p in train}
    assert kinds == {"next", "random", "same_document", "swapped"} and held_out
    assert sum(p.is_next for p in train) == len(train) // 2
    positive = next(p for p in train + held_out if p.a == first.text and p.is_next)
    assert second.start < first.end  # the chunker overlapped them ...
    assert positive.b == second.text[first.end - second.start:].lstrip()  # ... not the pair


def test_in_domain_training_is_stored_and_used(index_dir, encoder):
    target = index_dir.parent / "idx-copy"
    shutil.copytree(index_dir, target)
    data = coherence_training_set(target)
    result = train_coherence(data.train, data.held_out, data.out, base=data.base, steps=6,
                             batch_size=8)
    assert coherence_model_dir(target) == target / "coherence"
    assert set(result.before) == set(result.after) and "overall" in result.after
    assert all(0 <= v <= 1 for v in result.after.values())
    info = json.loads((target / "coherence" / "info.json").read_text())
    assert info["steps"] == 6 and info["held_out_accuracy_after"] == result.after
    # its own calibration, fitted on half the held-out pairs and checked on the other half
    half = len(data.held_out) // 2
    assert info["calibration"]["fitted_on"] == f"the first {half} held-out pairs of the index"
    assert info["calibration"]["checked_on"] == (
        f"the other {len(data.held_out) - half} held-out pairs")
    assert info["calibration"]["temperature"] > 0
    with TestClient(create_app(ServerSettings(index_dir=str(target)),
                               encoder=encoder)) as client:
        client.post("/coherence", json={"passages": STORY})
        assert client.app.state.services.coherence().name == str(target / "coherence")
    cli = CliRunner().invoke(main, ["coherence", "train", "--index", str(target), "--steps",
                                    "2", "--batch-size", "4"])
    assert cli.exit_code == 0, cli.output
    assert "held-out accuracy, overall:" in cli.output


def test_training_needs_an_index(tmp_path):
    result = CliRunner().invoke(main, ["coherence", "train", "--index", str(tmp_path / "no")])
    assert result.exit_code == 1 and result.output.startswith("Error: No index at")


@pytest.fixture(scope="module")
def one_story_index(tmp_path_factory, encoder):
    """A long story about a lighthouse (one passage per paragraph) and a short other file,
    so that a query finds several passages of one document, in rank order."""
    root = tmp_path_factory.mktemp("story")
    docs = root / "docs"
    docs.mkdir()
    events = ["was built on the rocks", "got its first keeper", "burned oil lamps",
              "survived the great storm", "was painted red and white", "got an electric lamp",
              "was automated", "became a museum"]
    (docs / "lighthouse.txt").write_text("\n\n".join(
        f"In year {1800 + 20 * i} the lighthouse {event}. The keeper wrote it in the log "
        f"book, as every keeper of the lighthouse did." for i, event in enumerate(events)))
    (docs / "bakery.txt").write_text("The bakery opens at six.\n\nBread is sold by noon.")
    build_index(docs, root / "idx", encoder, chunk=ChunkSettings(40, 0))
    return root / "idx"


def _assert_document_order(hits: list[dict], order: list[int], links: list[dict]):
    """The oracle: in the reading order, each document's hits are together and in the
    order of their ordinals; links between two of them are known, the others scored."""
    documents = [hits[i]["document_id"] for i in order]
    runs = [d for i, d in enumerate(documents) if i == 0 or documents[i - 1] != d]
    assert len(runs) == len(set(runs)), "a document's hits are read together"
    for document in set(documents):
        ordinals = [hits[i]["ordinal"] for i in order if hits[i]["document_id"] == document]
        assert ordinals == sorted(ordinals)
    assert [link["kind"] for link in links] == [
        "document" if a == b else "scored" for a, b in zip(documents, documents[1:])]


def test_search_hits_of_one_file_come_out_in_document_order(one_story_index, encoder):
    with TestClient(create_app(ServerSettings(index_dir=str(one_story_index)),
                               encoder=encoder)) as client:
        found = client.post("/search", json={"query": "lighthouse keeper storm", "k": 6,
                                             "group": "passages", "coherence": True}).json()
    hits, order = found["hits"], found["reading_order"]
    assert sum(h["path"] == "lighthouse.txt" for h in hits) >= 4
    ranked = [h["ordinal"] for h in hits if h["path"] == "lighthouse.txt"]
    assert ranked != sorted(ranked)  # the search's rank order is not the story's ...
    _assert_document_order(hits, order["order"], order["links"])  # ... the reading order is
    chain = found["coherence"]
    assert len(chain["links"]) == len(chain["pair_scores"]) == len(hits) - 1
    assert chain["pair_scores"] == [link["score"] for link in chain["links"]]
    assert {"pair_scores", "mean", "weakest_link", "weakest_score"} <= set(chain)


def test_cli_query_reads_hits_in_document_order(one_story_index):
    result = CliRunner().invoke(main, ["query", "lighthouse keeper storm", "--index",
                                       str(one_story_index), "-k", "6", "--group", "passages",
                                       "--coherence", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    _assert_document_order(body["hits"], body["reading_order"]["order"],
                           body["reading_order"]["links"])
    text = CliRunner().invoke(main, ["query", "lighthouse keeper storm", "--index",
                                     str(one_story_index), "-k", "6", "--group", "passages",
                                     "--coherence"]).output
    assert "Suggested reading order:" in text and "1.00d" in text
