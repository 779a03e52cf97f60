"""Shamir secret sharing (`shimmfa.core.shamir`), byte-compatible with Vault.

Expected values come from outside the module: farMFA's published share pair
and the field products of formats.md and FIPS-197 (`tests/vectors/farmfa.json`),
and a deliberately naive second implementation written here (carry-less
multiplication reduced by long division, inverses by search, per-byte
Lagrange interpolation) against which split and combine are checked.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seeded import drbg
from shimmfa.core.shamir import MAX_PARTS, combine, gf_div, gf_mul, random_x_tags, split
from shimmfa.errors import ShareError, ShimMfaError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "farmfa.json").read_text(encoding="utf-8")
)
SECRET = b"HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"


# -- a naive reference field, independent of the module's packed arithmetic ---------------


def ref_mul(a: int, b: int) -> int:
    product = 0
    for i in range(8):
        if (b >> i) & 1:
            product ^= a << i
    for bit in range(14, 7, -1):  # long division by x^8 + x^4 + x^3 + x + 1
        if (product >> bit) & 1:
            product ^= 0x11B << (bit - 8)
    return product


REF_INVERSE = {a: next(b for b in range(1, 256) if ref_mul(a, b) == 1) for a in range(1, 256)}


def ref_interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    """The value at `at` of the polynomial through `points` (Lagrange)."""
    total = 0
    for i, (x_i, y_i) in enumerate(points):
        term = y_i
        for j, (x_j, _) in enumerate(points):
            if j != i:
                term = ref_mul(term, ref_mul(at ^ x_j, REF_INVERSE[x_i ^ x_j]))
        total ^= term
    return total


def ref_combine(parts: Sequence[bytes], at: int = 0) -> bytes:
    tags = [part[-1] for part in parts]
    return bytes(
        ref_interpolate([(x, part[k]) for x, part in zip(tags, parts, strict=True)], at)
        for k in range(len(parts[0]) - 1)
    )


# -- the field --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["field"]["mul"], ids=lambda c: c["source"])
def test_field_products_match_the_published_ones(case: dict[str, int]) -> None:
    assert gf_mul(case["a"], case["b"]) == case["product"]
    assert gf_mul(case["b"], case["a"]) == case["product"]


@pytest.mark.parametrize("case", VECTORS["field"]["div"], ids=lambda c: c["source"])
def test_field_quotients_match_the_published_ones(case: dict[str, int]) -> None:
    assert gf_div(case["a"], case["b"]) == case["quotient"]


def test_gf_mul_equals_the_naive_reference_for_all_65536_pairs() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_mul(a, b) == ref_mul(a, b), (a, b)


def test_every_nonzero_element_divides_back_to_one() -> None:
    for b in range(1, 256):
        assert gf_div(1, b) == REF_INVERSE[b]
        assert gf_mul(gf_div(1, b), b) == 1
        assert gf_div(0, b) == 0


@given(st.integers(0, 255), st.integers(1, 255))
def test_gf_div_undoes_gf_mul(a: int, b: int) -> None:
    assert gf_div(gf_mul(a, b), b) == a


def test_division_by_zero_and_elements_out_of_range_are_refused() -> None:
    with pytest.raises(ZeroDivisionError):
        gf_div(6, 0)
    for bad in (-1, 256, True, 1.0):
        with pytest.raises(ShareError, match="element is an int 0..255"):
            gf_mul(bad, 3)  # type: ignore[arg-type]


# -- the farMFA vector and the share layout ----------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["combine"], ids=lambda c: c["group_id"])
def test_farmfa_published_shares_combine_to_its_secret(case: dict[str, object]) -> None:
    shares = [base64.b64decode(text) for text in case["shares"]]  # type: ignore[attr-defined]
    expected = str(case["secret"]).encode("ascii")
    assert combine(shares) == expected
    assert combine(shares[::-1]) == expected
    assert ref_combine(shares) == expected


def test_a_share_is_the_secrets_y_bytes_then_a_distinct_nonzero_x_tag() -> None:
    shares = split(SECRET, 5, 3, os.urandom)
    assert len(shares) == 5
    assert all(len(share) == len(SECRET) + 1 for share in shares)  # 32 chars -> 33 bytes
    tags = [share[-1] for share in shares]
    assert len(set(tags)) == 5 and 0 not in tags


def test_the_shares_are_points_of_one_polynomial_of_degree_t_minus_1_with_the_secret_at_0() -> None:
    for n, t in [(2, 2), (5, 3), (7, 7), (9, 4)]:
        shares = split(SECRET, n, t, os.urandom)
        basis = shares[:t]
        assert ref_combine(basis) == SECRET
        for other in shares[t:]:  # t points fix the polynomial; the rest lie on it
            assert ref_combine(basis, at=other[-1]) == other[:-1]


def test_split_draws_only_from_randbytes() -> None:
    assert split(SECRET, 5, 3, drbg(b"a")) == split(SECRET, 5, 3, drbg(b"a"))
    assert split(SECRET, 5, 3, drbg(b"a")) != split(SECRET, 5, 3, drbg(b"b"))


def test_x_tags_are_drawn_without_modulo_bias() -> None:
    # One draw among 255 tags accepts the bytes 0..254 (one tag each) and rejects 255.
    tags = [random_x_tags(1, lambda n, b=b: bytes([b]))[0] for b in range(255)]
    assert sorted(tags) == list(range(1, 256))
    stream = iter([255, 255, 6])
    assert random_x_tags(1, lambda n: bytes([next(stream)])) == [7]


def test_all_255_x_tags_can_be_dealt() -> None:
    shares = split(b"k", MAX_PARTS, 2, os.urandom)
    assert sorted(share[-1] for share in shares) == list(range(1, 256))
    assert combine(shares) == b"k"
    assert combine(shares[100:102]) == b"k"


# -- every subset ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(2, 7))
def test_every_t_subset_reconstructs_and_no_smaller_subset_does(n: int) -> None:
    for t in range(2, n + 1):
        shares = split(SECRET, n, t, os.urandom)
        for size in range(2, n + 1):
            for subset in itertools.combinations(shares, size):
                if size >= t:
                    assert combine(subset) == SECRET, (n, t, size)
                else:  # combine cannot tell: it returns a wrong secret
                    assert combine(subset) != SECRET, (n, t, size)


def test_parts_of_two_different_splits_combine_to_a_wrong_secret_without_error() -> None:
    first = split(SECRET, 3, 2, os.urandom)
    second = split(SECRET, 3, 2, os.urandom)
    mixed = [first[0]] + [share for share in second if share[-1] != first[0][-1]][:1]
    assert combine(mixed) != SECRET


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=64),
    n=st.integers(2, 24),
    data=st.data(),
)
def test_split_then_any_t_shares_in_any_order_round_trip(
    secret: bytes, n: int, data: st.DataObject
) -> None:
    t = data.draw(st.integers(2, n), label="threshold")
    shares = split(secret, n, t, os.urandom)
    chosen = data.draw(st.permutations(shares), label="order")[: data.draw(st.integers(t, n))]
    assert combine(chosen) == secret


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((SECRET, 5, 1), r"threshold must be at least 2 \(got 1\)"),
        ((SECRET, 5, 0), r"threshold must be at least 2 \(got 0\)"),
        ((SECRET, 3, 4), r"parts \(3\) cannot be less than threshold \(4\)"),
        ((SECRET, 256, 3), r"parts cannot exceed 255 \(got 256\)"),
        ((SECRET, 300, 256), r"threshold cannot exceed 255 \(got 256\)"),
        ((b"", 5, 3), "cannot split an empty secret"),
        (("HXDM", 5, 3), "the secret must be bytes, not str"),
        ((SECRET, 5, True), "threshold must be an int, not bool"),
        ((SECRET, 5.0, 3), "parts must be an int, not float"),
    ],
)
def test_split_refuses_what_vault_refuses(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ShareError, match=message) as caught:
        split(*args, os.urandom)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ShimMfaError)


def test_split_refuses_a_random_source_that_returns_too_little() -> None:
    with pytest.raises(ShareError, match=r"randbytes\(1\) must return 1 bytes"):
        split(SECRET, 5, 3, lambda n: b"")


GOOD = split(SECRET, 3, 2, drbg(b"refusals"))


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], r"less than two parts cannot rebuild a secret \(got 0\)"),
        (GOOD[:1], r"less than two parts cannot rebuild a secret \(got 1\)"),
        ([b"\x07", b"\x09"], r"parts must be at least two bytes.*\(got 1\)"),
        (
            [GOOD[0], GOOD[1] + b"\x05"],
            r"all parts must be the same length \(got \[33, 34\] bytes\)",
        ),
        ([GOOD[0], GOOD[0]], rf"duplicate part detected: x tag {GOOD[0][-1]} appears twice"),
        ([GOOD[0], GOOD[1][:-1] + b"\x00"], "a part has x tag 0, which split never makes"),
        ([GOOD[0], "text"], "every part must be bytes, not str"),
        (GOOD[0], "combine takes a sequence of parts, not a single part"),
    ],
)
def test_combine_refuses_what_vault_refuses(parts: Sequence[bytes], message: str) -> None:
    with pytest.raises(ShareError, match=message) as caught:
        combine(parts)
    text = str(caught.value)
    for share in GOOD:  # no share material in a message, in any common spelling
        assert share.hex() not in text and base64.b64encode(share).decode() not in text
    assert not re.search(r"\\x[0-9a-f]{2}", text)
