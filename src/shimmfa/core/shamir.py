"""Shamir secret sharing over GF(2^8), byte-compatible with HashiCorp Vault's
`shamir` package (and so with farMFA, which uses it).

Rules of this module:

- The field is GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (0x11B, the AES field):
  `gf_mul(3, 7) == 9`, `gf_div(6, 3) == 2`.
- `split(secret, parts, threshold, randbytes)`: for every secret byte, a
  random polynomial of degree `threshold - 1` whose constant term is that
  byte, evaluated at `parts` distinct nonzero x tags. A part (share) is the
  y byte for each secret byte, in secret order, then one x-tag byte: a share
  is one byte longer than the secret. As in Vault, the x tags are the first
  `parts` entries of a random permutation of 1..255 (here an unbiased
  Fisher-Yates draw from `randbytes`), so shares carry no order.
- The random source is an argument (`randbytes(n) -> n bytes`, e.g.
  `os.urandom`); this module never draws randomness of its own. Coefficients
  are uniform bytes, the leading one included (a zero leading coefficient is
  what makes any `threshold - 1` shares independent of the secret).
- `combine(parts)`: Lagrange interpolation at x = 0. It cannot tell that it
  was given fewer than `threshold` parts, or parts of two different splits:
  the result is then just a wrong secret. Callers that must know (the Toc
  layer, `core/toc.py`) check something else that was split alongside.
- Refused, with a `ShareError` (a ValueError) a person can act on: threshold
  < 2 or > 255, threshold > parts, parts > 255, an empty secret; combining
  fewer than 2 parts, parts shorter than 2 bytes, parts of unequal length,
  duplicate x tags, x tag 0 (split never makes it: it would be the secret).
  Messages name counts, lengths and x tags, never share or secret bytes.
- Side channels: Python gives no constant-time guarantee, but no step here
  indexes a table or branches on a secret or share byte. All bytes of a
  secret or share are packed into one integer (one byte per 8-bit lane) and
  multiplied by a public scalar (an x tag or a Lagrange weight made of x
  tags) with shifts, masks and XORs only; branches depend on public scalars.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shimmfa.errors import ShareError

__all__ = ["MAX_PARTS", "combine", "gf_div", "gf_mul", "random_x_tags", "split"]

MAX_PARTS = 255  # an x tag is one nonzero byte
_REDUCTION = 0x1B  # x^8 = x^4 + x^3 + x + 1 in this field


# -- field arithmetic -------------------------------------------------------------------------


def gf_mul(a: int, b: int) -> int:
    """The product of two field elements (0..255)."""
    _check_element(a)
    _check_element(b)
    return _mul(a, b)


def gf_div(a: int, b: int) -> int:
    """`a / b` in the field; `b` must not be 0."""
    _check_element(a)
    _check_element(b)
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(2^8)")
    return _mul(a, _inverse(b))


def _check_element(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
        raise ShareError(f"a GF(2^8) element is an int 0..255, not this {type(value).__name__}")


def _lane_ones(lanes: int) -> int:
    """0x0101..01 over `lanes` bytes: the low bit of every lane."""
    return int.from_bytes(b"\x01" * lanes, "big")


def _mul_lanes(packed: int, scalar: int, ones: int) -> int:
    """Every byte lane of `packed` times the public `scalar` (`ones` from
    `_lane_ones`). Doubling a lane shifts its low seven bits and adds 0x1B
    where its top bit was set; `0x1B` times a lane's 0/1 never carries into
    the next lane."""
    low7 = ones * 0x7F
    result = 0
    while scalar:
        if scalar & 1:
            result ^= packed
        packed = ((packed & low7) << 1) ^ (((packed >> 7) & ones) * _REDUCTION)
        scalar >>= 1
    return result


def _mul(a: int, b: int) -> int:
    return _mul_lanes(a, b, 1)


def _inverse(b: int) -> int:
    """b^254 = b^-1 for b != 0 (the multiplicative group has order 255)."""
    result, power, exponent = 1, b, 254
    while exponent:
        if exponent & 1:
            result = _mul(result, power)
        power = _mul(power, power)
        exponent >>= 1
    return result


# -- split ------------------------------------------------------------------------------------


def split(
    secret: bytes, parts: int, threshold: int, randbytes: Callable[[int], bytes]
) -> list[bytes]:
    """Split `secret` into `parts` shares, any `threshold` of which rebuild it.

    `randbytes(n)` must return n bytes from a CSPRNG (pass `os.urandom`)."""
    if not isinstance(secret, bytes | bytearray | memoryview):
        raise ShareError(f"the secret must be bytes, not {type(secret).__name__}")
    secret = bytes(secret)
    for name, value in (("parts", parts), ("threshold", threshold)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ShareError(f"{name} must be an int, not {type(value).__name__}")
    if threshold < 2:
        raise ShareError(
            f"threshold must be at least 2 (got {threshold}): with 1, every share is the secret"
        )
    if threshold > MAX_PARTS:
        raise ShareError(f"threshold cannot exceed {MAX_PARTS} (got {threshold})")
    if parts > MAX_PARTS:
        raise ShareError(f"parts cannot exceed {MAX_PARTS} (got {parts}): an x tag is one byte")
    if parts < threshold:
        raise ShareError(
            f"parts ({parts}) cannot be less than threshold ({threshold}): "
            "the secret could never be rebuilt"
        )
    if not secret:
        raise ShareError("cannot split an empty secret")
    lanes = len(secret)
    ones = _lane_ones(lanes)
    tags = random_x_tags(parts, randbytes)
    # coefficients[k] holds the x^k coefficient of every byte's polynomial
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [int.from_bytes(_draw(randbytes, lanes), "big") for _ in range(threshold - 1)]
    shares = []
    for x in tags:
        y = 0
        for coefficient in reversed(coefficients):  # Horner's rule
            y = _mul_lanes(y, x, ones) ^ coefficient
        shares.append(y.to_bytes(lanes, "big") + bytes([x]))
    return shares


def random_x_tags(parts: int, randbytes: Callable[[int], bytes]) -> list[int]:
    """`parts` distinct x tags as `split` draws them: the first `parts`
    entries of a uniform random permutation of 1..255."""
    if not isinstance(parts, int) or isinstance(parts, bool) or not 0 <= parts <= MAX_PARTS:
        raise ShareError(f"parts must be an int 0..{MAX_PARTS}, not {parts!r}")
    pool = list(range(1, MAX_PARTS + 1))
    for i in range(parts):
        j = i + _uniform_below(MAX_PARTS - i, randbytes)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:parts]


def _uniform_below(n: int, randbytes: Callable[[int], bytes]) -> int:
    """A uniform int in 0..n-1 (1 <= n <= 256) by rejection: no modulo bias."""
    limit = 256 - 256 % n
    while True:
        (byte,) = _draw(randbytes, 1)
        if byte < limit:
            return byte % n


def _draw(randbytes: Callable[[int], bytes], n: int) -> bytes:
    data = randbytes(n)
    if not isinstance(data, bytes | bytearray) or len(data) != n:
        raise ShareError(f"randbytes({n}) must return {n} bytes; check the random source")
    return bytes(data)


# -- combine ----------------------------------------------------------------------------------


def combine(parts: Sequence[bytes]) -> bytes:
    """Rebuild a secret from shares made by `split` (or by Vault).

    Give it at least `threshold` shares of one split. With fewer, or with
    shares of different splits, it returns a wrong secret without noticing:
    nothing in a share says how many are needed."""
    if isinstance(parts, bytes | bytearray | memoryview | str):
        raise ShareError("combine takes a sequence of parts, not a single part")
    parts = list(parts)
    for part in parts:
        if not isinstance(part, bytes | bytearray | memoryview):
            raise ShareError(f"every part must be bytes, not {type(part).__name__}")
    parts = [bytes(part) for part in parts]
    if len(parts) < 2:
        raise ShareError(f"less than two parts cannot rebuild a secret (got {len(parts)})")
    length = len(parts[0])
    if length < 2:
        raise ShareError(
            f"parts must be at least two bytes, the secret's bytes then the x tag (got {length})"
        )
    lengths = sorted({len(part) for part in parts})
    if len(lengths) > 1:
        raise ShareError(f"all parts must be the same length (got {lengths} bytes)")
    tags = [part[-1] for part in parts]
    if 0 in tags:
        raise ShareError("a part has x tag 0, which split never makes: it is not a share")
    seen: set[int] = set()
    for x in tags:
        if x in seen:
            raise ShareError(f"duplicate part detected: x tag {x} appears twice")
        seen.add(x)
    lanes = length - 1
    ones = _lane_ones(lanes)
    secret = 0
    for i, (part, x_i) in enumerate(zip(parts, tags, strict=True)):
        # L_i(0) = prod_{j != i} x_j / (x_i - x_j); minus is XOR in this field
        numerator = denominator = 1
        for j, x_j in enumerate(tags):
            if j != i:
                numerator = _mul(numerator, x_j)
                denominator = _mul(denominator, x_i ^ x_j)
        weight = _mul(numerator, _inverse(denominator))
        secret ^= _mul_lanes(int.from_bytes(part[:-1], "big"), weight, ones)
    return secret.to_bytes(lanes, "big")
