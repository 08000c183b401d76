"""The pure-Python WordPiece (the browser's tokenizer) against HF `tokenizers` on the same tokenizer.json."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilm_fixtures import require_model
from ruvector_edge.errors import MalformedMessage, ProviderUnavailable
from ruvector_edge.memory import wordpiece_tables
from ruvector_edge.memory.model_files import load_minilm_files
from ruvector_edge.memory.wordpiece import WordPiece

ROOT = Path(__file__).resolve().parent.parent

CORPUS = [
    "how does auth work?",
    "API authentication flow uses signed JWTs",
    "Café naïve résumé Ångström Øresund façade",
    "¿Dónde está el café? Ça va, Ærø, Łódź, Şişli, Đà Nẵng",
    "東京は日本の首都です。北京、上海 𠀋𪚲",
    "한국어 텍스트와 ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ",
    "I ❤️ emoji 🥰 👍🏽 👨‍👩‍👧 🇫🇷 ☃ 🚀",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101,
    "pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious",
    "ctrl\x00\x07\x1b chars\u200b\ufeff\u00ad\t\nnew\rline\x7f\x85end",
    "hello [MASK] wor[CLS]ld [mask] [SEP][PAD][UNK]",
    "ΑΣ ΣΟΦΟΣ İstanbul STRASSE ß ﬁne Ǆ ǅ ǈ",
    "\u0898\u07fd x\U0001e944\u0301\u1b44 y\U0001e944\u0898\u1b44 z\U0001e944a\u1b44",
    "a\u0301\u0316b \u1d15e\U0001D15E\U0001D16E e\u0344\u0345",
    "",
    "   ",
    "word " * 400,
    "Ed25519 signs every envelope; AES-256-GCM seals payloads (RFC 8785, JCS). $100 + 5% = ~€107!",
    "𝓗𝓮𝓵𝓵𝓸 ℌ𝔢𝔩𝔩𝔬 Ⅻ ① ¼ ™",
    "\U000f0000 private \ue000 use \U0010fffd and unassigned \U0003fffd \u0378",
]


@functools.cache
def _pair():
    try:
        from tokenizers import Tokenizer

        raw = load_minilm_files().tokenizer_json.decode("utf-8")
    except (ImportError, ProviderUnavailable) as error:
        require_model(error)
    reference = Tokenizer.from_str(raw)
    reference.enable_truncation(256)
    reference.no_padding()
    return reference, WordPiece(raw, max_tokens=256)


def _same(text: str) -> None:
    reference, ours = _pair()
    assert ours.encode(text) == reference.encode(text).ids, repr(text)


@pytest.mark.parametrize("text", CORPUS)
def test_same_ids_as_tokenizers_on_the_corpus(text):
    _same(text)


def test_texts_over_256_tokens_are_cut_like_tokenizers():
    reference, ours = _pair()
    for text in ("word " * 400, "东" * 300, "x" * 120 + " [MASK]" * 300, "supercalifragilistic " * 50):
        ids = ours.encode(text)
        assert len(ids) == 256 and ids == reference.encode(text).ids


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_same_ids_as_tokenizers_on_random_unicode(text):
    _same(text)


MARKS = [chr(cp) for cp in (0x0301, 0x0316, 0x0345, 0x07FD, 0x0898, 0x0899, 0x1B44, 0x1E944, 0x1E94A, 0x11446,
                            0x1D165, 0x1D16D, 0x302E, 0x16FF0, 0x0000, 0x00AD, 0xE000)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(MARKS + ["a", "é", " ", "\U0001D15E", "ǅ", "!"]), max_size=24))
def test_same_ids_where_combining_marks_reorder(text):
    """NFD reorders runs of marks (the one non-local rule); with no such mark in the vocabulary, ids never depend on it."""
    _same(text)


def test_the_tables_are_what_tokenizers_does_with_every_code_point():
    """Regenerating the tables from the installed tokenizers gives the committed ones."""
    reference, _ = _pair()
    spec = importlib.util.spec_from_file_location("gen_wordpiece_tables", ROOT / "scripts" / "gen_wordpiece_tables.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    probed = generator.probe(reference)
    assert {name: "".join(getattr(wordpiece_tables, name)) for name in probed} == probed


def test_bad_input_is_a_typed_error():
    _, ours = _pair()
    for bad in (None, b"bytes", 3, ["list"]):
        with pytest.raises(MalformedMessage):
            ours.encode(bad)
    with pytest.raises(MalformedMessage):
        ours.encode("lone \ud800 surrogate")
    assert ours.encode("still works") == _pair()[0].encode("still works").ids


def test_a_tokenizer_json_of_another_kind_is_refused():
    raw = load_minilm_files().tokenizer_json.decode("utf-8")
    cased, whitespace, marked = json.loads(raw), json.loads(raw), json.loads(raw)
    cased["normalizer"]["lowercase"] = False
    whitespace["pre_tokenizer"] = {"type": "Whitespace"}
    marked["model"]["vocab"]["##\u1b44"] = len(marked["model"]["vocab"])  # a mark NFD would reorder
    for broken in ("{}", "not json", "[1]", json.dumps(cased), json.dumps(whitespace), json.dumps(marked)):
        with pytest.raises(ProviderUnavailable):
            WordPiece(broken)
    with pytest.raises(ProviderUnavailable):
        WordPiece(raw, max_tokens=2)
