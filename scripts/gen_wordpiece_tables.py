"""Regenerate py/ruvector_edge/memory/wordpiece_tables.py from HF `tokenizers` itself.

The pure-Python WordPiece tokenizer must give the ids HF `tokenizers` gives,
in CPython and in Pyodide. Its BertNormalizer and BertPreTokenizer decide
per character from Rust's Unicode tables (an old `unicode_categories` crate for
control and punctuation, Rust std for whitespace and lower-casing), which
differ from Python's `unicodedata` — and Python's own tables differ between
3.11 (Unicode 14) and Pyodide's 3.14 (Unicode 16). So instead of re-deriving
them from `unicodedata`, this script asks `tokenizers` what it does with every
code point and writes the answer down as ranges: the tables are then the same
in every runtime and the tokenizer needs no `unicodedata` at all.

Run: .venv/bin/python scripts/gen_wordpiece_tables.py   (needs the [embeddings] extra)
tests/test_wordpiece.py regenerates the tables in memory and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "py" / "ruvector_edge" / "memory" / "wordpiece_tables.py"
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def hangul_nfd(cp: int) -> str:
    """The algorithmic decomposition of a precomposed Hangul syllable (Unicode §3.12)."""
    index = cp - HANGUL_FIRST
    lead, vowel, trail = 0x1100 + index // 588, 0x1161 + (index % 588) // 28, index % 28
    return chr(lead) + chr(vowel) + (chr(0x11A7 + trail) if trail else "")


def _ranges(cps: list[int]) -> str:
    """Sorted code points as 'a-b' hex ranges joined by ','."""
    out: list[str] = []
    start = prev = None
    for cp in cps:
        if prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            out.append(f"{start:x}" if start == prev else f"{start:x}-{prev:x}")
        start = prev = cp
    if start is not None:
        out.append(f"{start:x}" if start == prev else f"{start:x}-{prev:x}")
    return ",".join(out)


def probe(tokenizer) -> dict[str, str]:
    """Ask the normalizer and the pre-tokenizer about every code point; the tables as strings."""
    tables = _char_tables(tokenizer)
    tables.update(_combining_tables(tokenizer, tables))
    return tables


def _char_tables(tokenizer) -> dict[str, str]:
    normalize = tokenizer.normalizer.normalize_str
    pre_tokenize = tokenizer.pre_tokenizer.pre_tokenize_str
    drop, space, pad, mapped, punct, white = [], [], [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        n = normalize(c)
        if n == "":
            drop.append(cp)
        elif n == " ":
            space.append(cp)
        elif n == f" {c} ":
            pad.append(cp)
        elif HANGUL_FIRST <= cp <= HANGUL_LAST:
            if n != hangul_nfd(cp):
                raise SystemExit(f"U+{cp:04X}: tokenizers gives {n!r}, not the algorithmic Hangul decomposition")
        elif n != c:
            mapped.append(f"{cp:x}:" + " ".join(f"{ord(ch):x}" for ch in n))
        pieces = len(pre_tokenize(f"a{c}b"))
        if pieces == 2:
            white.append(cp)
        elif pieces == 3:
            punct.append(cp)
    return {"DROP": _ranges(drop), "SPACE": _ranges(space), "PAD": _ranges(pad), "MAP": ",".join(mapped),
            "PUNCT": _ranges(punct), "WHITESPACE": _ranges(white)}


def _parse_ranges(text: str) -> list[int]:
    cps: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cps.extend(range(int(first, 16), int(last or first, 16) + 1))
    return cps


def _combining_tables(tokenizer, tables: dict[str, str]) -> dict[str, str]:
    """MARKS: the combining marks that survive accent stripping and that Rust's NFD reorders.

    NFD's canonical reordering is the one place the normalizer looks beyond a
    single character. A mark is found by whether it swaps places with one of two
    marks Rust knows (Adlam U+1E944, class 230; Balinese U+1B44, class 9): every
    non-zero class is below the first or above the second. WordPiece refuses a
    vocabulary containing any of them, so that per-character tables stay exact."""
    normalize = tokenizer.normalizer.normalize_str
    high, low = chr(0x1E944), chr(0x1B44)
    if normalize(high + low) != low + high:
        raise SystemExit("the probe marks U+1E944 / U+1B44 do not reorder under this tokenizers")
    dropped = set(_parse_ranges(tables["DROP"]))
    outputs = {cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and cp not in dropped}
    outputs.update(int(out, 16) for entry in tables["MAP"].split(",") for out in entry.partition(":")[2].split())
    marks = []
    for cp in sorted(outputs):
        c = chr(cp)
        if normalize(c) == c and (normalize(high + c) == c + high or normalize(c + low) == low + c):
            marks.append(cp)
    isolated = set(_parse_ranges(tables["PUNCT"])) | set(_parse_ranges(tables["WHITESPACE"]))
    if isolated.intersection(marks):
        raise SystemExit("a reordering mark is punctuation or whitespace: reordering would move word boundaries")
    return {"MARKS": _ranges(marks)}


def render(tables: dict[str, str], version: str) -> str:
    lines = [
        f'"""Character tables of HF tokenizers {version} BertNormalizer / BertPreTokenizer, probed code point by code point.',
        "",
        "Generated by scripts/gen_wordpiece_tables.py: do not edit. Hex code point ranges 'a-b' joined by ','; MAP is",
        "'cp:out out ...' (lower-casing and accent stripping). Hangul syllables decompose algorithmically (not listed).",
        '"""',
        "",
        f'TOKENIZERS_VERSION = "{version}"',
    ]
    for name, value in tables.items():
        chunks = [value[i : i + 100] for i in range(0, len(value), 100)] or [""]
        lines.append(f"{name} = (")
        lines.extend(f'    "{chunk}"' for chunk in chunks)
        lines.append(")")
    return "\n".join(lines) + "\n"


def main() -> None:
    import tokenizers

    sys.path.insert(0, str(OUT.parents[2]))
    from ruvector_edge.memory.model_files import load_minilm_files

    tokenizer = tokenizers.Tokenizer.from_str(load_minilm_files().tokenizer_json.decode("utf-8"))
    OUT.write_text(render(probe(tokenizer), tokenizers.__version__), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
