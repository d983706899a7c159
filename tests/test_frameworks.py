"""Issue 20: real clients, unmodified. LangChain and LlamaIndex take the encoder and the
index through their own interfaces; the official `openai` client, langchain-openai's
`OpenAIEmbeddings` and LlamaIndex's OpenAI-like embedding talk to a real `bertsearch serve`.
"""

import asyncio
import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from conftest import REPO
from test_server_e2e import free_port

from indexer import Index, build_index

TEXTS = ["Tide pools hold anemones, crabs and starfish at low tide.",
         "Sharpen a kitchen knife on a soaked whetstone at fifteen degrees.",
         "Oil the bicycle chain after riding in the rain."]


def test_langchain_takes_the_encoder(encoder):
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings

    embeddings = encoder.as_langchain()
    assert isinstance(embeddings, Embeddings)
    store = FAISS.from_texts(TEXTS, embedding=embeddings)
    [hit] = store.similarity_search("how do I hone a blade?", k=1)
    assert hit.page_content == TEXTS[1]
    vectors = asyncio.run(embeddings.aembed_documents(TEXTS))
    assert np.allclose(vectors, encoder.encode(TEXTS), atol=1e-6)
    assert np.allclose(asyncio.run(embeddings.aembed_query("crabs")),
                       encoder.encode(["crabs"])[0], atol=1e-6)


def test_llama_index_takes_the_encoder(encoder):
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding

    model = encoder.as_llama_index()
    assert isinstance(model, BaseEmbedding)
    index = VectorStoreIndex.from_documents([Document(text=t) for t in TEXTS],
                                            embed_model=model)
    [found] = index.as_retriever(similarity_top_k=1).retrieve("where do starfish live?")
    assert found.node.get_content() == TEXTS[0]
    assert np.allclose(model.get_query_embedding("crabs"), encoder.encode(["crabs"])[0],
                       atol=1e-6)


def test_a_bertsearch_index_as_a_langchain_vector_store(tmp_path, encoder):
    from langchain_core.vectorstores import VectorStore

    with Index.open(tmp_path / "idx", encoder=encoder, create=True) as index:
        store = index.as_langchain()
        assert isinstance(store, VectorStore)
        ids = store.add_texts(TEXTS, metadatas=[{"topic": "sea"}, {"topic": "kitchen"},
                                                {"topic": "bike"}], ids=["a", "b", "c"])
        assert ids == ["a", "b", "c"]
        [doc] = store.similarity_search("blade", k=1)
        assert doc.page_content == TEXTS[1] and doc.metadata["topic"] == "kitchen"
        assert doc.id == "b" and doc.metadata["line_start"] == 1
        filtered = store.similarity_search("blade", k=3, filter={"topic": {"$ne": "kitchen"}})
        assert {d.id for d in filtered} == {"a", "c"}
        retriever = store.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "bike"}})
        assert [d.id for d in retriever.invoke("anything")] == ["c"]
        assert store.delete(["a"]) and index.get("a") is None
        assert [d.id for d in store.get_by_ids(["b", "a"])] == ["b"]


@pytest.fixture(scope="module")
def live(tmp_path_factory, sample_docs, encoder):
    """A real `bertsearch serve` (no API key, and one with)."""
    root = tmp_path_factory.mktemp("clients")
    build_index(shutil.copytree(sample_docs, root / "docs"), root / "idx", encoder)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--index", str(root / "idx"), "--port",
         str(port), "--api-key", "sk-test", "--log-level", "warning", "--no-access-log"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
    yield f"{base}/v1"
    proc.terminate()
    proc.wait(timeout=60)


def test_the_official_openai_client(live, encoder):
    import openai

    client = openai.OpenAI(base_url=live, api_key="sk-test", max_retries=0)
    # the client asks for base64 by default and decodes it itself
    result = client.embeddings.create(model="text-embedding-3-small", input=TEXTS)
    got = [d.embedding for d in result.data]
    assert np.allclose(got, encoder.encode(TEXTS), atol=1e-5)
    floats = client.embeddings.create(model="text-embedding-3-small", input=TEXTS[:1],
                                      encoding_format="float")
    assert np.allclose(floats.data[0].embedding, got[0], atol=1e-5)
    ids = encoder.tokenize(["hello world"])[0]
    by_ids = client.embeddings.create(model="x", input=[[101, *ids, 102]])
    assert np.allclose(by_ids.data[0].embedding, encoder.encode(["hello world"])[0],
                       atol=1e-5)
    assert [m.id for m in client.models.list()] == ["all-MiniLM-L6-v2"]
    with pytest.raises(openai.UnprocessableEntityError, match="input"):
        client.embeddings.create(model="x", input=[])
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.embeddings.create(model="x", input=[[101, 10 ** 6, 102]])
    with pytest.raises(openai.AuthenticationError, match="API key"):
        openai.OpenAI(base_url=live, api_key="wrong", max_retries=0).embeddings.create(
            model="x", input="hi")


def test_langchain_openai_embeddings(live, encoder):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(base_url=live, api_key="sk-test",
                                  check_embedding_ctx_length=False)  # model left default
    assert np.allclose(embeddings.embed_documents(TEXTS), encoder.encode(TEXTS), atol=1e-5)
    assert np.allclose(embeddings.embed_query("crabs"), encoder.encode(["crabs"])[0],
                       atol=1e-5)


def test_llama_index_openai_like_embedding(live, encoder):
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    model = OpenAILikeEmbedding(model_name="all-MiniLM-L6-v2", api_base=live,
                                api_key="sk-test")
    assert np.allclose(model.get_text_embedding_batch(TEXTS), encoder.encode(TEXTS),
                       atol=1e-5)
