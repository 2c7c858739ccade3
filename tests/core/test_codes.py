import numpy as np
import pytest

from geoloc_node.codes import SUPPORTED_BITS, as_codes, check_bits, code_bytes, hamming, pack_signs, unpack_bits
from geoloc_node.errors import CodeLengthError


@pytest.mark.parametrize("bits", SUPPORTED_BITS)
def test_pack_unpack_round_trip_and_hamming_matches_bit_count(bits):
    rng = np.random.default_rng(bits)
    a = rng.standard_normal((7, bits))
    b = rng.standard_normal((7, bits))
    pa, pb = pack_signs(a), pack_signs(b)
    assert pa.shape == (7, bits // 8) and pa.dtype == np.uint8
    assert np.array_equal(unpack_bits(pa), (a > 0).astype(np.uint8))
    expected = ((a > 0) != (b > 0)).sum(axis=1)
    assert np.array_equal(hamming(pa, pb), expected)
    assert code_bytes(bits) == bits // 8


def test_hamming_broadcasts_one_query_against_many():
    rng = np.random.default_rng(0)
    db = pack_signs(rng.standard_normal((100, 256)))
    d = hamming(db[3], db)
    assert d.shape == (100,) and d[3] == 0 and (d[np.arange(100) != 3] > 0).all()


def test_known_bit_pattern():
    # bit 0 is the most significant bit of byte 0 (numpy packbits order)
    v = -np.ones(64)
    v[0] = 1
    assert pack_signs(v)[0] == 0b1000_0000
    assert hamming(pack_signs(v), pack_signs(-np.ones(64))) == 1


@pytest.mark.parametrize("bits", [0, 8, 100, 1024, 256.0, True, "256"])
def test_unsupported_lengths_are_refused(bits):
    with pytest.raises(CodeLengthError):
        check_bits(bits)


def test_bad_codes_are_refused_with_clear_errors():
    with pytest.raises(CodeLengthError, match="uint8"):
        as_codes(np.zeros(32, dtype=np.int16))
    with pytest.raises(CodeLengthError, match="bits"):
        as_codes(np.zeros(31, dtype=np.uint8))
    with pytest.raises(CodeLengthError, match="expected 128"):
        as_codes(np.zeros(32, dtype=np.uint8), bits=128)
    with pytest.raises(CodeLengthError, match="cannot compare"):
        hamming(np.zeros(32, np.uint8), np.zeros(16, np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        pack_signs(np.full(64, np.nan))


def test_popcount_lookup_table_agrees_with_numpy(monkeypatch):
    """The numpy 1.x path (lookup table) gives the same counts as np.bitwise_count."""
    from geoloc_node import codes

    x = np.random.default_rng(3).integers(0, 2**63, (50, 4), dtype=np.uint64)
    want = np.bitwise_count(x)
    monkeypatch.delattr(np, "bitwise_count")
    got = codes.popcount(x)
    assert np.array_equal(got, want)
    a, b = x[:1].view(np.uint8), x.view(np.uint8)
    assert np.array_equal(codes.hamming(a, b), np.unpackbits(a ^ b, axis=-1).sum(axis=-1))
