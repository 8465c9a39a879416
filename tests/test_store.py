"""The result store: whole entries, keyed by everything, corrupt entries dropped not crashed on."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signseg_core.store import ResultStore, decode_entry, encode_entry, key_digest


@dataclasses.dataclass(frozen=True)
class Key:
    model: str
    unit: int
    sign: str
    alpha: float
    seed: int = 0


def test_round_trip(tmp_path):
    store = ResultStore(tmp_path / "s")
    key = Key("m", 1, "positive", 0.5)
    assert store.get(key) is None and key not in store
    arrays = {"scores": np.arange(6, dtype=np.float32).reshape(2, 3), "codes": np.ones((2, 4))}
    store.put(key, arrays, meta={"generator": "fourier"},
              blobs={"png": [b"\x89PNG-a", b"", b"xyz"]})
    got_arrays, meta, blobs = store.get(key)
    assert key in store and len(store) == 1
    np.testing.assert_array_equal(got_arrays["scores"], arrays["scores"])
    assert got_arrays["codes"].dtype == np.float64
    assert blobs["png"] == [b"\x89PNG-a", b"", b"xyz"]
    assert meta["generator"] == "fourier" and meta["key"]["unit"] == 1


def test_every_field_is_part_of_the_key():
    base = Key("m", 1, "positive", 0.5, 0)
    variants = [dataclasses.replace(base, **{f.name: v}) for f, v in
                zip(dataclasses.fields(Key), ["m2", 2, "negative", 0.6, 1])]
    digests = {key_digest(k) for k in [base, *variants]}
    assert len(digests) == 6
    assert key_digest(base) == key_digest(Key("m", 1, "positive", 0.5, 0))


def test_corrupt_entry_is_dropped_and_reported_missing(tmp_path):
    store = ResultStore(tmp_path / "s")
    key = Key("m", 1, "positive", 0.5)
    store.put(key, {"x": np.zeros(3)})
    raw = store.get_raw(key)
    store._cache.set(key_digest(key), raw[: len(raw) // 2])  # a half-written value
    assert store.get(key) is None
    assert key not in store  # deleted, so the caller recomputes


def test_a_pickled_value_is_never_unpickled(tmp_path):
    store = ResultStore(tmp_path / "s")
    key = Key("m", 1, "positive", 0.5)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    import diskcache

    plain = diskcache.Cache(str(tmp_path / "s"))  # a writer that pickles
    plain.set(key_digest(key), Evil())
    plain.close()
    assert store.get(key) is None
    assert not marker.exists()


def test_decode_rejects_garbage():
    with pytest.raises(ValueError, match="corrupt"):
        decode_entry(b"not an npz")
    with pytest.raises(TypeError, match="object"):
        encode_entry({"x": np.array([object()])})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=5),
       st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=8))
def test_encode_decode_property(blobs, values):
    arrays, meta, got = decode_entry(encode_entry({"v": np.array(values, dtype=np.float32)},
                                                  {"n": len(values)}, {"b": blobs}))
    np.testing.assert_array_equal(arrays["v"], np.array(values, dtype=np.float32))
    assert got["b"] == blobs and meta["n"] == len(values)


def _writer(directory, n):
    store = ResultStore(directory)
    for i in range(n):
        store.put({"k": i % 3}, {"x": np.full(50_000, i, dtype=np.int64)})


def test_readers_in_another_process_never_see_half_an_entry(tmp_path):
    directory = tmp_path / "s"
    store = ResultStore(directory)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_writer, args=(str(directory), 40))
    proc.start()
    seen = 0
    while proc.is_alive() or seen == 0:
        for k in range(3):
            got = store.get({"k": k})
            if got is not None:
                x = got[0]["x"]
                assert x.shape == (50_000,) and (x == x[0]).all()
                seen += 1
        if not proc.is_alive() and seen == 0:
            break
    proc.join()
    assert proc.exitcode == 0 and seen > 0


def _big(value: float) -> dict:
    """Arrays large enough that diskcache keeps them in their own ``.val`` file."""
    return {"x": np.full(20_000, value)}


def test_swapped_blobs_on_disk_are_misses_not_the_wrong_entry(tmp_path, caplog):
    store = ResultStore(tmp_path / "s")
    half, whole = Key("m", 1, "positive", 0.5), Key("m", 1, "positive", 1.0)
    store.put(half, _big(0.5))
    store.put(whole, _big(1.0))
    files = sorted((tmp_path / "s").rglob("*.val"))
    assert len(files) == 2
    a, b = files[0].read_bytes(), files[1].read_bytes()
    files[0].write_bytes(b)
    files[1].write_bytes(a)
    assert store.get(half) is None and store.get(whole) is None
    assert half not in store and whole not in store  # dropped, so they are recomputed
    assert "another key" in caplog.text
    store.put(half, _big(0.5))
    assert store.get(half)[0]["x"][0] == 0.5


def test_a_small_entry_under_another_key_is_a_miss(tmp_path):
    store = ResultStore(tmp_path / "s")
    a, b = Key("m", 1, "positive", 0.5), Key("m", 1, "negative", 0.5)
    store.put(a, {"x": np.zeros(3)})
    store._cache.set(key_digest(b), store.get_raw(a))  # a's blob filed under b's key
    assert store.get(b) is None and b not in store
    assert store.get(a) is not None


def test_an_unreadable_index_is_moved_aside_and_a_fresh_store_made(tmp_path, caplog):
    directory = tmp_path / "s"
    store = ResultStore(directory)
    store.put(Key("m", 1, "positive", 0.5), {"x": np.zeros(3)})
    store.close()
    garbage = np.random.default_rng(0).bytes(50_000)
    (directory / "cache.db").write_bytes(garbage)
    again = ResultStore(directory)
    assert len(again) == 0 and again.get(Key("m", 1, "positive", 0.5)) is None
    kept = list(directory.glob("cache.db.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == garbage
    assert kept[0].name in caplog.text
    again.put(Key("m", 1, "positive", 0.5), {"x": np.ones(3)})
    assert ResultStore(directory).get(Key("m", 1, "positive", 0.5))[0]["x"][0] == 1.0


@pytest.mark.parametrize("where", ["itself", "parent"])
def test_a_store_path_that_is_a_file_is_one_sentence(tmp_path, where):
    from signseg_core.errors import StoreError

    (tmp_path / "f").write_text("not a folder")
    path = tmp_path / "f" if where == "itself" else tmp_path / "f" / "results"
    with pytest.raises(StoreError, match="must be a folder") as info:
        ResultStore(path)
    assert "\n" not in str(info.value)
