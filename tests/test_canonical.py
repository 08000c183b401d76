"""RFC 8785 (JCS) canonical JSON: the RFC's examples, our own cases, properties, and two independent oracles.

Signatures are made over these bytes in Python and checked by peers that may
canonicalize in JS, so agreement is tested against the `rfc8785` package
(dev-only) and against ECMAScript itself (node's JSON.stringify; node is a
requirement of the project, which builds its web app with npm).
"""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess
from decimal import Decimal

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.canonical import canonical_flat, canonical_str, canonicalize, format_number
from ruvector_edge.errors import CanonicalizationError


def jcs(text: str) -> bytes:
    """Canonical bytes of a JSON text, the way a peer's bytes arrive."""
    return canonicalize(json.loads(text))


def _ecmascript_int(text: str) -> int | float:
    number = int(text)
    return number if -(2**53) <= number <= 2**53 else float(number)


def parse_like_js(data: bytes):
    """json.loads, but integers past 2^53 become the nearest double as JSON.parse makes them.

    JCS prints a double such as 4.263741965846015e16 as "42637419658460150"; plain
    json.loads reads that back as an int no double equals, which canonicalize refuses.
    """
    return json.loads(data, parse_int=_ecmascript_int)


# --- RFC 8785 examples --------------------------------------------------------


def test_rfc8785_3_2_2_sample():
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    want = '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert jcs(text) == want.encode("utf-8")


def test_rfc8785_3_2_3_sorting():
    text = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    keys = [key for key, _ in json.loads(jcs(text), object_pairs_hook=lambda pairs: pairs)]
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


# RFC 8785 Appendix B: IEEE 754 bit pattern -> ECMAScript text (None: not representable in JSON).
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("7fffffffffffffff", None),
    ("7ff0000000000000", None),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(bits))[0]


@pytest.mark.parametrize(("bits", "want"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits, want):
    value = _double(bits)
    if want is None:
        with pytest.raises(CanonicalizationError):
            format_number(value)
        with pytest.raises(CanonicalizationError):
            canonicalize([value])
    else:
        assert format_number(value) == want
        assert canonicalize([value]) == f"[{want}]".encode()


# --- our own cases, one per feature of the public JCS test suite ----------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param('[ 7, {"z": [ ], "10": false, "2": null}, [ ] ]', '[7,{"10":false,"2":null,"z":[]},[]]', id="arrays"),
        pytest.param(
            '{"côté": 4, "cote": 1, "côte": 3, "coté": 2}',
            '{"cote":1,"coté":2,"côte":3,"côté":4}',
            id="french",  # a French collation would put "côte" before "coté"; JCS ignores locale
        ),
        pytest.param(
            '{"b": {"b": {"\\n": 2.0, "": "empty"}, "B": 1}, "A": { }, "": [ ]}',
            '{"":[],"A":{},"b":{"B":1,"b":{"":"empty","\\n":2}}}',
            id="structures",
        ),
        pytest.param('{"unnormalized": "e\\u0301", "nfc": "\\u00e9"}', '{"nfc":"\u00e9","unnormalized":"e\u0301"}', id="unicode"),
        pytest.param(
            '{"n": [1.0, 1E2, -0.0, 0.1e1, 1e-7, 5E-7, 1e21, 1.2345678901234568E20], '
            '"s": "\\u0008\\u0009\\u000a\\u000c\\u000d\\u001f\\u007f\\u2028\\/\\"\\\\", "l": [true, false, null]}',
            '{"l":[true,false,null],"n":[1,100,0,1,1e-7,5e-7,1e+21,123456789012345680000],'
            '"s":"\\b\\t\\n\\f\\r\\u001f\x7f\u2028/\\"\\\\"}',
            id="values",
        ),
        pytest.param(
            '{"\\ufb33": 1, "\\u007f": 2, "\\ud83d\\ude02": 3, "</script>": 4, "\\r": 5, "\\n": 6, "\\u0000": 7}',
            '{"\\u0000":7,"\\n":6,"\\r":5,"</script>":4,"\x7f":2,"\U0001f602":3,"\ufb33":1}',
            id="weird",
        ),
    ],
)
def test_jcs_feature_cases(text, want):
    assert jcs(text) == want.encode("utf-8")


def test_non_bmp_key_sorts_before_the_top_of_the_bmp():
    """UTF-16 puts U+1F600 (D83D DE00) before U+E000..U+FFFF; code-point order would not."""
    value = {"\uffff": 1, "\ue000": 2, "\U0001f600": 3, "\ufb33": 4, "z": 5}
    assert canonicalize(value) == '{"z":5,"\U0001f600":3,"\ue000":2,"\ufb33":4,"\uffff":1}'.encode("utf-8")
    assert sorted(value) != ["z", "\U0001f600", "\ue000", "\ufb33", "\uffff"]  # plain sorting would be wrong here


def test_no_whitespace_and_tuples_are_arrays():
    assert canonicalize({"a": (1, [2, {}]), "b": ""}) == b'{"a":[1,[2,{}]],"b":""}'


def test_booleans_are_not_numbers():
    assert canonicalize([True, False, 1, 0]) == b"[true,false,1,0]"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (2**53, "9007199254740992"),
        (-(2**53), "-9007199254740992"),
        (2**53 + 2, "9007199254740994"),  # beyond 2^53 but an exact double: what JS would print
        (10**21, "1e+21"),
        (2**63, "9223372036854776000"),
    ],
)
def test_large_integers_that_are_exact_doubles(value, want):
    assert format_number(value) == want
    assert canonicalize(value) == want.encode()


# --- refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(-math.inf, id="-inf"),
        pytest.param({"a": [1, math.nan]}, id="nested-nan"),
        pytest.param("\ud800", id="lone-high-surrogate"),
        pytest.param("a\udc00b", id="lone-low-surrogate"),
        pytest.param({"k": "\udfff"}, id="surrogate-in-flat-object"),
        pytest.param({"\ud83d": 1}, id="surrogate-key"),
        pytest.param({1: "a"}, id="int-key"),
        pytest.param({None: "a"}, id="none-key"),
        pytest.param({("a",): 1}, id="tuple-key"),
        pytest.param({True: 1}, id="bool-key"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param({1, 2}, id="set"),
        pytest.param(Decimal("1.5"), id="decimal"),
        pytest.param(1j, id="complex"),
        pytest.param(object(), id="object"),
        pytest.param({"a": b"\x00"}, id="bytes-in-object"),
        pytest.param(2**53 + 1, id="2^53+1"),
        pytest.param(-(2**53) - 1, id="-2^53-1"),
        pytest.param(12345678901234567890, id="20-digit-int"),
        pytest.param({"n": 2**53 + 1}, id="inexact-int-in-flat-object"),
    ],
)
def test_values_without_a_canonical_form_are_refused(value):
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**1024], ids=["1e400", "-1e400", "2^1024"])
def test_integers_beyond_the_double_range_are_refused(value):
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


def test_int_subclass_is_printed_as_its_value():
    class Weird(int):
        def __str__(self) -> str:
            return "seven"

    assert canonicalize({"a": Weird(7)}) == b'{"a":7}'


def test_large_double_printed_as_digits_needs_an_ecmascript_parse():
    """Why the properties parse with `parse_like_js`: the canonical text of a big double is integer digits."""
    text = canonicalize(4.263741965846015e16)
    assert text == b"42637419658460150"
    with pytest.raises(CanonicalizationError):
        canonicalize(json.loads(text))
    assert canonicalize(parse_like_js(text)) == text


def test_deep_nesting_is_refused_not_a_crash():
    value: list = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


# --- properties -------------------------------------------------------------------

SAFE = 2**53
scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=6),
    max_leaves=30,
)
# rfc8785 refuses |n| >= 2^53 as integers, so the oracle comparison stays one below.
oracle_values = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE + 1, SAFE - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400)
@given(json_values)
def test_parse_of_canonical_form_equals_the_value(value):
    assert parse_like_js(canonicalize(value)) == value


@settings(max_examples=400)
@given(json_values)
def test_canonicalize_is_idempotent_through_a_parse(value):
    once = canonicalize(value)
    assert canonicalize(parse_like_js(once)) == once


@settings(max_examples=600)
@given(oracle_values)
def test_agrees_with_the_rfc8785_package(value):
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=300)
@given(st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=4), st.integers(0, 9), max_size=12))
def test_keys_come_out_in_utf16_code_unit_order(value):
    keys = [key for key, _ in json.loads(canonicalize(value), object_pairs_hook=lambda pairs: pairs)]
    assert keys == sorted(value, key=lambda key: key.encode("utf-16-be"))


flat_values = st.dictionaries(
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8),
    st.text() | st.integers(-SAFE, SAFE),
    max_size=10,
)


@settings(max_examples=400)
@given(flat_values)
def test_flat_object_fast_paths_match_the_general_writer(value):
    """Envelope headers take a json.dumps fast path; it must not change a byte."""
    general = canonical_str(value).encode("utf-8")
    assert canonicalize(value) == general
    assert canonical_flat(value) == general


@settings(max_examples=300)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips_exactly(value):
    text = format_number(value)
    assert float(text) == value
    assert text == format_number(float(text))


def test_numbers_agree_with_ecmascript():
    """node's JSON.stringify is the definition RFC 8785 points to; compare on 20,000 seeded random doubles."""
    rng = random.Random(8785)
    patterns = [rng.getrandbits(64) for _ in range(10_000)]
    patterns += [(rng.getrandbits(64) & 0x800FFFFFFFFFFFFF) | (rng.randint(970, 1100) << 52) for _ in range(10_000)]
    hexes = [f"{bits:016x}" for bits in patterns if math.isfinite(_double(f"{bits:016x}"))]
    script = (
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{"
        "process.stdout.write(JSON.stringify(JSON.parse(s).map(h=>JSON.stringify(Buffer.from(h,'hex').readDoubleBE(0)))))})"
    )
    result = subprocess.run(["node", "-e", script], input=json.dumps(hexes), capture_output=True, text=True, timeout=60, check=True)
    expected = json.loads(result.stdout)
    mismatches = [(h, format_number(_double(h)), want) for h, want in zip(hexes, expected) if format_number(_double(h)) != want]
    assert mismatches == []
    assert len(expected) == len(hexes) > 19_000
