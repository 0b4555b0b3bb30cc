"""crc64_combine: the CRC64 of A||B from the CRC64s of A and B, as the C extension computes it."""

from __future__ import annotations

import random

import pytest

from shared.replication.checksums import ChecksumAlgorithm, checksum_hex, crc64_combine


def crc(data: bytes) -> int:
    return int(checksum_hex(ChecksumAlgorithm.CRC64, data), 16)


@pytest.mark.parametrize("length_a", [0, 1, 512, 4096, 262144])
@pytest.mark.parametrize("length_b", [0, 1, 7, 512, 65536, 3 * 1024 * 1024 + 17, 4 * 1024 * 1024])
def test_combine_is_the_crc_of_the_concatenation(length_a: int, length_b: int) -> None:
    rng = random.Random(length_a * 31 + length_b)
    a, b = rng.randbytes(length_a), rng.randbytes(length_b)
    assert crc64_combine(crc(a), crc(b), length_b) == crc(a + b)


def test_a_run_of_extents_combines_left_to_right() -> None:
    rng = random.Random(7)
    extents = [rng.randbytes(rng.randrange(1, 64) * 512) for _ in range(20)]
    combined = 0
    for extent in extents:
        combined = crc64_combine(combined, crc(extent), len(extent))
    assert combined == crc(b"".join(extents))
    # a different order (or a damaged extent) gives a different value: the combination is not a sum
    assert crc64_combine(crc(extents[1]), crc(extents[0]), len(extents[0])) != crc(extents[0] + extents[1])
