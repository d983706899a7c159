"""One rule picks the encoder for the CLI, the indexer and the server: what is asked for,
else what an index records, else the defaults; never vectors of another kind silently."""

import pytest
from click.testing import CliRunner

from cli import main
from embedder.errors import EncoderMismatchError
from embedder.resolver import EncoderRecord, resolve_encoder, same_vectors
from indexer import ChunkSettings, Index, IndexMismatchError, build_index, encoder_for_index


@pytest.fixture(scope="module")
def record(encoder):
    return EncoderRecord("default", "torch", "mean", encoder.fingerprint, encoder.dimension)


def test_backend_families():
    assert same_vectors("torch", "onnx") and same_vectors("onnx", "torch")
    assert not same_vectors("torch", "onnx-int8") and not same_vectors("onnx-int8", "onnx")


def test_no_record_gives_what_is_asked_or_the_defaults(tiny_model_dir):
    encoder = resolve_encoder()
    assert (encoder.source, encoder.backend_name, encoder.pooling) == ("default", "torch",
                                                                       "mean")
    tiny = resolve_encoder(str(tiny_model_dir), pooling="cls")
    assert tiny.dimension == 32 and tiny.pooling == "cls"


@pytest.mark.parametrize("request_, message", [
    (dict(backend="onnx-int8"), "built with the torch backend; onnx-int8 gives other vectors"),
    (dict(pooling="cls"), "built with mean pooling, not cls"),
])
def test_a_request_that_mixes_vectors_is_refused_in_one_line(record, request_, message):
    with pytest.raises(EncoderMismatchError, match=message) as caught:
        resolve_encoder(record=record, **request_)
    assert "\n" not in str(caught.value)


def test_another_model_is_refused_and_rebuild_allows_it(record, tiny_model_dir):
    with pytest.raises(EncoderMismatchError, match="built with model 'default'"):
        resolve_encoder(str(tiny_model_dir), record=record)
    assert resolve_encoder(str(tiny_model_dir), record=record, replace=True).dimension == 32


def test_the_record_fills_what_is_not_asked(record):
    cls_record = EncoderRecord("default", "torch", "cls", record.fingerprint, 384)
    assert resolve_encoder(record=cls_record).pooling == "cls"  # not the model's own mean


def test_indexes_and_servers_use_the_recorded_encoder(tmp_path, sample_docs, tiny_model_dir):
    """An index built with a non-default model and pooling is queried with them, by
    Python, the CLI and the server, without naming them again."""
    from fastapi.testclient import TestClient

    from server import ServerSettings, create_app

    tiny = resolve_encoder(str(tiny_model_dir), pooling="cls")
    build_index(sample_docs, tmp_path / "idx", tiny, chunk=ChunkSettings(100, 16))
    with Index.open(tmp_path / "idx") as index:
        assert (index.encoder.fingerprint, index.encoder.pooling) == (tiny.fingerprint, "cls")
    again = encoder_for_index(tmp_path / "idx")
    assert again.fingerprint == tiny.fingerprint and again.pooling == "cls"
    with pytest.raises(IndexMismatchError, match="pooling"):
        encoder_for_index(tmp_path / "idx", pooling="mean")
    result = CliRunner().invoke(main, ["query", "knife", "--index", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    with TestClient(create_app(ServerSettings(index_dir=str(tmp_path / "idx")))) as client:
        assert client.get("/stats").json()["dimension"] == 32
        assert client.post("/search", json={"query": "knife"}).status_code == 200
    app = create_app(ServerSettings(index_dir=str(tmp_path / "idx"), model="default"))
    with pytest.raises(IndexMismatchError, match="built with model"), TestClient(app):
        pass
