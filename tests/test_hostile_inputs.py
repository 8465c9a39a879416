"""Hostile and careless inputs (issue 14): each is one sentence and a non-zero exit, never a
traceback, a pickle run, a wrong result or an unbounded allocation; what held already stays held.

The command-line table runs ``signseg_core.cli.main.main(argv)`` in this process: ``(id, argv,
exit code, phrase the message must contain)``; ``{name}`` in an argv is a file of the ``files``
fixture. The parsers (CSV, NPZ, alpha ranges, generator options, checkpoint headers) are fuzzed
with hypothesis, a few dozen examples each, so the module stays well under 40 s on a CPU.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
import tomllib
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import signseg_core.cli.neuron_commands
from signseg_core.cli.main import main
from signseg_core.cli.options import check_generator_options, generator_options
from signseg_core.conditions import MAX_ALPHAS, parse_alphas
from signseg_core.errors import CheckpointError, SignsegError, StoreError
from signseg_core.models.checkpoints import load_state_dict_file, save_state_dict
from signseg_core.models.registry import load_model
from signseg_core.neurons.response_files import MAX_ABS_RESPONSE, parse_csv, parse_npz
from signseg_core.neurons.uploads import UploadError, save_upload
from signseg_core.store import ResultStore, key_digest
from signseg_ui.serving import server_path

FUZZ = settings(max_examples=40, deadline=2000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- files the table names -----------------------------------------------------------------------

def _png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of any claimed size: one IDAT of compressed zeros (a 20000 x 20000
    image is 30 kB on disk, 400 MB decoded: what PIL calls a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = zlib.compress(b"\0" * ((width + 1) * min(height, 64)), 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def _image(path: Path, size: int = 32) -> Path:
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


class _Payload:
    """Unpickling this writes the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _responses(folder: Path, names: list[str], *, value: str = "1.5") -> list[str]:
    """CSV lines: 12 images, neuron 'a'; the first image's response is ``value``."""
    lines = ["image,neuron,response"]
    for i, name in enumerate(names):
        lines.append(f"{name},a,{value if i == 0 else i}")
    return lines


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    out = {"dir": str(root), "file": str(root / "plain.txt")}
    (root / "plain.txt").write_text("not a folder")
    state = {k: v.clone() for k, v in load_model("tiny_test").module.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][0] = float("nan")
    out["nan_ckpt"] = str(save_state_dict(state, root / "nan.safetensors"))
    out["nan_name"] = first
    torch.save({"state_dict": _Payload(root / "pwned")}, root / "evil.pth")
    out["evil"], out["marker"] = str(root / "evil.pth"), str(root / "pwned")
    images = root / "img"
    images.mkdir()
    names = [_image(images / f"im{i:02d}.png").name for i in range(12)]
    (images / "huge.png").write_bytes(_png(20_000, 20_000))
    (images / "tiny.png").write_bytes(_png(1, 1))
    (images / "cut.png").write_bytes((images / "im00.png").read_bytes()[:200])
    (root / "outside.png").write_bytes((images / "im00.png").read_bytes())
    cases = {
        "ok": names, "dotdot": ["../outside.png", *names[1:]],
        "absolute": [str(root / "outside.png"), *names[1:]],
        "bomb": ["huge.png", *names[1:]], "one_px": ["tiny.png", *names[1:]],
        "truncated": ["cut.png", *names[1:]],
    }
    for case, listed in cases.items():
        (images / f"{case}.csv").write_text("\n".join(_responses(images, listed)) + "\n")
        out[case] = str(images / f"{case}.csv")
    for case, value in {"overflow": "1e308", "secret": "hunter2", "inf": "inf"}.items():
        (images / f"{case}.csv").write_text("\n".join(_responses(images, names, value=value))
                                            + "\n")
        out[case] = str(images / f"{case}.csv")
    return out


# -- the command line ----------------------------------------------------------------------------

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
VIS = ["visualize", "tiny_test", "--unit", "0", "--quiet"]
FIT = ["neurons", "fit", "--model", "tiny_test", "--min-images", "5"]

CLI = [
    # good behaviour that must stay: a pickle that would run code is refused, not run
    ("pickle-refused", ["dale", "tiny_test", "--weights", "{evil}"], 2, "no code from it was run"),
    ("missing-weights", ["dale", "tiny_test", "--weights", "{dir}/none.pth"], 2, "are missing"),
    ("nan-checkpoint", ["dale", "tiny_test", "--weights", "{nan_ckpt}"], 2,
     "NaN or infinite weights in {nan_name}"),
    ("folder-as-weights", ["dale", "tiny_test", "--weights", "{dir}"], 2, "is a folder"),
    ("device-tpu", ["dale", "tiny_test", "--device", "tpu"], 2, "not available on this machine"),
    ("device-meta", ["dale", "tiny_test", "--device", "meta"], 2, "choose from auto, cpu"),
    ("device-mps", ["dale", "tiny_test", "--device", "mps"], 2, "not available on this machine"),
    ("device-cuda", ["dale", "tiny_test", "--device", "cuda"], 2, "not available on this machine"),
    ("alphas-inf", [*VIS, "--alphas", "0:inf:0.1"], 2, "every number must be finite"),
    ("alphas-nan", [*VIS, "--alphas", "nan:1:0.1"], 2, "every number must be finite"),
    ("alphas-tiny-step", [*VIS, "--alphas", "0:1:1e-8"], 2, "more than 1001 strengths"),
    ("alphas-reversed", [*VIS, "--alphas", "1:0:0.1"], 2, "the range must rise"),
    ("alphas-zero-step", [*VIS, "--alphas", "0:1:0"], 2, "the range must rise"),
    ("alphas-empty", [*VIS, "--alphas", ""], 2, "alphas must look like"),
    ("alphas-long-list", [*VIS, "--alphas", ",".join(["0.5"] * 1002)], 2, "more than 1001"),
    ("alphas-out-of-range", [*VIS, "--alphas", "0:2:0.5"], 2, "alpha must be in [0, 1]"),
    ("option-size", [*VIS, "--generator-option", "size=20000"], 2, "size must be at most 1,024"),
    ("option-freq", [*VIS, "--generator-option", "max_freq=100000"], 2, "max_freq must be"),
    ("option-decay-nan", [*VIS, "--generator-option", "decay=nan"], 2, "decay must be"),
    ("option-unknown", [*VIS, "--generator-option", "bogus=1"], 2, "takes no option"),
    ("option-form", [*VIS, "--generator-option", "size"], 2, "KEY=VALUE"),
    ("batch-negative", [*VIS, "--batch-size", "-1"], 2, "--batch-size must be a positive int"),
    ("batch-huge", [*VIS, "--batch-size", "1000000000"], 2, "at most 4,096"),
    ("unknown-model", ["dale", "resnet51"], 2, "unknown model"),
    ("argparse-error", ["dale"], 2, "the following arguments are required"),
    ("demo-into-a-file", ["neurons", "demo", "{file}"], 2, "is a file, not a folder"),
    ("data-is-a-folder", [*FIT, "{dir}"], 2, "is a folder, not a file"),
    ("data-missing", [*FIT, "{dir}/none.csv"], 2, "file not found"),
    ("image-dotdot", [*FIT, "{dotdot}"], 2, "image '../outside.png' (first on line 2) must be"),
    ("image-absolute", [*FIT, "{absolute}"], 2, "must be a file name inside the image folder"),
    ("image-bomb", [*FIT, "{bomb}"], 2, "image 'huge.png' (first on line 2) is larger than"),
    ("image-1px", [*FIT, "{one_px}"], 2, "image 'tiny.png' (first on line 2) is 1x1 px"),
    ("image-truncated", [*FIT, "{truncated}"], 2, "'cut.png' (first on line 2) is not an image"),
    ("response-1e308", [*FIT, "{overflow}"], 2, "line 2: response '1e308' is too large"),
    ("response-text", [*FIT, "{secret}"], 2, "line 2: response 'hunter2' is not a number"),
    ("response-inf", [*FIT, "{inf}"], 2, "line 2: response is 'inf'"),
    ("localize-bomb", ["neurons", "localize", "{dir}/img/huge.png", "--unit", "0", "--model",
                       "tiny_test"], 2, "huge.png' is larger than PIL decodes safely"),
]


def _no_model(*args, **kwargs):
    raise AssertionError("a model loaded before the neuron data was checked")


@pytest.mark.parametrize("name, argv, code, phrase", [
    pytest.param(*case, id=case[0], marks=NO_CUDA if case[0] == "device-cuda" else ())
    for case in CLI])
def test_the_command_line_answers_in_one_sentence(name, argv, code, phrase, files, capsys,
                                                  monkeypatch):
    monkeypatch.setattr(signseg_core.cli.neuron_commands, "load_model", _no_model)
    try:
        got = main([a.format(**files) for a in argv])
    except SystemExit as exc:  # argparse's own errors: usage and one sentence
        got = exc.code
    err = capsys.readouterr().err
    assert got == code, err
    assert phrase.format(**files) in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")
             or ": error:" in line]
    assert len(lines) == 1, err
    assert not Path(files["marker"]).exists()  # the pickle's payload never ran


def test_an_internal_error_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("signseg_core.cli.commands.cmd_models", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])


def test_a_cache_path_that_is_a_file_is_one_sentence(files, monkeypatch, capsys):
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", files["file"])
    with pytest.raises(StoreError, match="must be a folder"):
        ResultStore()
    code = main(["visualize", "tiny_test", "--unit", "0", "--alphas", "0", "--quiet",
                 "--generations", "1", "--restarts", "1", "--generator-option", "size=32"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("env", ["SIGNSEG_CACHE_DIR", "SIGNSEG_WEIGHTS_DIR",
                                 "SIGNSEG_PACKAGES_DIR"])
def test_a_folder_variable_naming_a_file_is_one_sentence_naming_the_variable(env, files,
                                                                           monkeypatch):
    from signseg_core import paths
    monkeypatch.setenv(env, str(Path(files["file"]) / "below"))  # a folder under a file
    folder = {"SIGNSEG_CACHE_DIR": paths.cache_dir, "SIGNSEG_WEIGHTS_DIR": paths.weights_dir,
              "SIGNSEG_PACKAGES_DIR": paths.packages_dir}[env]
    with pytest.raises(NotADirectoryError, match=f"must be a folder.*set {env} to a folder"):
        folder()


# -- the store -----------------------------------------------------------------------------------

def _damage(store: ResultStore, key, how: str, tmp_path: Path) -> None:
    raw = store.get_raw(key)
    val = next(iter(store.directory.rglob("*.val")), None)
    if how == "truncated":
        store._cache.set(key_digest(key), raw[: len(raw) // 3])
    elif how == "bit-flip":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0xFF
        flipped[40] ^= 0x01
        store._cache.set(key_digest(key), bytes(flipped))
    elif how == "planted-pickle":
        import diskcache

        plain = diskcache.Cache(str(store.directory))
        plain.set(key_digest(key), _Payload(tmp_path / "pwned"))
        plain.close()
    elif how == "deleted-blob":
        val.unlink()
    elif how == "swapped":
        other = {"k": "other"}
        store.put(other, {"x": np.full(20_000, 7.0)})
        a, b = sorted(store.directory.rglob("*.val"))
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)


@pytest.mark.parametrize("how", ["truncated", "bit-flip", "planted-pickle", "deleted-blob",
                                 "swapped"])
def test_a_damaged_store_entry_is_a_miss_then_recomputes_bit_identically(how, tmp_path):
    store = ResultStore(tmp_path / "s")
    key, arrays = {"k": "mine", "alpha": 0.5}, {"x": np.linspace(0, 1, 20_000)}
    store.put(key, arrays)
    _damage(store, key, how, tmp_path)
    assert store.get(key) is None and key not in store
    assert not (tmp_path / "pwned").exists()
    store.put(key, arrays)
    np.testing.assert_array_equal(store.get(key)[0]["x"], arrays["x"])


def test_a_garbage_index_is_set_aside_and_the_store_reopens(tmp_path):
    store = ResultStore(tmp_path / "s")
    store.put({"k": 1}, {"x": np.ones(3)})
    store.close()
    (tmp_path / "s" / "cache.db").write_bytes(b"\x07" * 4096)
    again = ResultStore(tmp_path / "s")
    assert again.get({"k": 1}) is None and list((tmp_path / "s").glob("cache.db.unreadable-*"))


def test_a_writer_killed_before_its_commit_leaves_no_entry_and_no_debris(tmp_path):
    """diskcache writes a value file, then commits its row: a SIGKILL between the two leaves an
    orphan file, which the next open removes; the entry is simply absent."""
    store = ResultStore(tmp_path / "s")
    store.put({"k": 1}, {"x": np.zeros(20_000)})
    store.close()
    orphan = next((tmp_path / "s").rglob("*.val")).with_name("0123456789abcdef.val")
    orphan.write_bytes(b"half an entry")
    again = ResultStore(tmp_path / "s")
    assert not orphan.exists() and again.get({"k": 2}) is None
    np.testing.assert_array_equal(again.get({"k": 1})[0]["x"], np.zeros(20_000))


def test_the_served_image_hides_tracebacks_and_refuses_cross_origin_requests():
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert 0 < config["server"]["maxUploadSize"] <= 1024
    docker = (root / "Dockerfile").read_text()
    assert "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none" in docker and "0.0.0.0" in docker


# -- uploads and server paths (the dashboard) ----------------------------------------------------

def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


UPLOADS = [
    ("zip-slip", lambda png: [("a.zip", _zip({"../../evil.png": png}))], "outside the image"),
    ("zip-absolute", lambda png: [("a.zip", _zip({"/tmp/evil.png": png}))], "outside the image"),
    ("zip-bomb", lambda png: [("a.zip", _zip({"big.png": b"\0" * (8 << 20)}))],
     "unpack to more than"),
    ("not-a-zip", lambda png: [("a.zip", b"PK-not-really")], "not a readable zip"),
    ("not-an-image", lambda png: [("notes.txt", b"hello")], "not an image file"),
    ("image-bomb", lambda png: [("huge.png", _png(20_000, 20_000))], "decompression bomb"),
    ("truncated-image", lambda png: [("cut.png", png[:60])], "not an image PIL can read"),
    ("no-images", lambda png: [("a.zip", _zip({"readme.md": b"x"}))], "no image files"),
]


@pytest.mark.parametrize("name, images, phrase", UPLOADS, ids=[u[0] for u in UPLOADS])
def test_an_upload_cannot_reach_out_of_its_folder_or_its_limits(name, images, phrase, png,
                                                                tmp_path):
    with pytest.raises(UploadError, match=phrase):
        save_upload(("r.csv", b"image,neuron,response\n"), images(png), root=tmp_path / "up",
                    max_bytes=4 << 20)
    assert not list(tmp_path.rglob("evil.png"))
    assert [p.name for p in (tmp_path / "up").iterdir()] == []  # nothing half-written kept


def test_an_upload_of_responses_and_a_zip_becomes_a_folder_of_its_own(png, tmp_path):
    images = [("pics.zip", _zip({"images/a.png": png, "__MACOSX/._a.png": b"junk"}))]
    path, folder = save_upload(("r.csv", b"image,neuron,response\n"), images,
                               root=tmp_path / "up")
    assert path.name == "responses.csv" and (folder / "images" / "a.png").is_file()
    assert not (folder / "__MACOSX").exists()
    assert save_upload(("r.csv", b"image,neuron,response\n"), images,
                       root=tmp_path / "up") == (path, folder)  # the same upload, reused


def test_server_paths_are_off_by_default_and_confined_to_the_roots(monkeypatch, tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "r.csv").write_text("x")
    (tmp_path / "secret.csv").write_text("db_password\nhunter2\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    monkeypatch.delenv("SIGNSEG_ALLOW_SERVER_PATHS", raising=False)
    with pytest.raises(ValueError, match="turned off"):
        server_path(str(root / "sub" / "r.csv"))
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")
    with pytest.raises(ValueError, match="turned off"):  # no roots: still off
        server_path(str(root / "sub" / "r.csv"))
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(root))
    assert server_path("sub/r.csv") == (root / "sub" / "r.csv").resolve()
    assert server_path(str(root / "sub" / "r.csv")) == (root / "sub" / "r.csv").resolve()
    for bad in (str(tmp_path / "secret.csv"), "../secret.csv", "sub/../../secret.csv",
                str(root / "link.csv"), "/etc/passwd"):
        with pytest.raises(ValueError, match="not inside the data folders") as info:
            server_path(bad)
        assert "hunter2" not in str(info.value)


# -- fuzzing the parsers -------------------------------------------------------------------------

def _check_csv(text: str) -> None:
    """``parse_csv`` never raises, and a file it accepts holds bounded finite responses."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.csv"
        path.write_text(text, encoding="utf-8")
        parsed = parse_csv(path)
    assert isinstance(parsed.problems, list)
    if not parsed.problems:
        r = parsed.responses[~np.isnan(parsed.responses)]
        assert np.isfinite(r).all() and (np.abs(r) <= MAX_ABS_RESPONSE).all()


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_fuzz_csv_text(text):
    _check_csv(text)


@FUZZ
@given(st.lists(st.sampled_from(["image,neuron,response\n", "a.png,n,1\n", "a.png,n,1e308\n",
                                 "b.png,n,-inf\n", "../c.png,m,2\n", ",,\n", '"x\n', "\0,\0,\0\n",
                                 "a.png,n,nan\n", "b.png,n,0x10\n", "c.png,n,-1e18\n"]),
                max_size=12))
def test_fuzz_csv_rows(rows):
    _check_csv("".join(rows))


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_npz_bytes_never_raise(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.npz"
        path.write_bytes(data)
        assert parse_npz(path).problems  # random bytes are never a valid file


@FUZZ
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=12),
       st.integers(1, 3))
def test_fuzz_npz_values(values, n_neurons):
    r = np.resize(np.array(values), (max(1, len(values) // n_neurons), n_neurons))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.npz"
        np.savez(path, responses=r, images=np.array([f"i{k}.png" for k in range(len(r))]))
        parsed = parse_npz(path)
    bad = np.isinf(r) | (np.abs(np.nan_to_num(r)) > MAX_ABS_RESPONSE)
    assert bool(parsed.problems) == bool(bad.any())


@FUZZ
@given(st.one_of(st.text(max_size=40),
                 st.builds(lambda a, b, c: f"{a}:{b}:{c}",
                           *[st.floats(allow_nan=True, allow_infinity=True)] * 3),
                 st.lists(st.floats(-1, 2), max_size=30).map(lambda v: ",".join(map(str, v)))))
def test_fuzz_alphas_are_a_short_checked_tuple_or_one_sentence(text):
    try:
        alphas = parse_alphas(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert 1 <= len(alphas) <= MAX_ALPHAS and all(0.0 <= a <= 1.0 for a in alphas)


@FUZZ
@given(st.sampled_from(["fourier", "pixel", "biggan", "deepsim", "nope"]),
       st.lists(st.builds(lambda k, v: f"{k}={v}",
                          st.sampled_from(["size", "max_freq", "decay", "grids", "truncation",
                                           "resolution", "x", ""]),
                          st.one_of(st.integers(-10**9, 10**9), st.floats(), st.text(max_size=8))),
                max_size=4))
def test_fuzz_generator_options_are_checked_without_building(name, items):
    try:
        options = check_generator_options(name, generator_options(items))
    except (ValueError, SignsegError):
        return
    assert options.get("size", 1) <= 1024 and options.get("max_freq", 1) <= 64


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".pth", ".safetensors"]))
def test_fuzz_checkpoint_bytes_are_refused_in_one_sentence(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"w{suffix}"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            load_state_dict_file(path)


@FUZZ
@given(st.dictionaries(st.text(max_size=6), st.one_of(
    st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F64", "I8", "XX"]),
                           "shape": st.lists(st.integers(-2, 10**12), max_size=3),
                           "data_offsets": st.lists(st.integers(-5, 10**12), max_size=3)}),
    st.integers(), st.text(max_size=4)), max_size=3))
def test_fuzz_safetensors_headers_are_refused_or_read_finite(header):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        blob = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 64)
        try:
            state = load_state_dict_file(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            return
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def _raise_an_unexpected_error(details: str) -> None:
    import streamlit as st_  # AppTest runs this function's source as a script of its own

    from signseg_ui.error_display import show_error
    st_.set_option("client.showErrorDetails", details)
    show_error(RuntimeError("secret detail of the host"), context="Cannot draw")


@pytest.mark.parametrize("details, shows_type, shows_message, shows_trace", [
    ("full", True, True, True), ("stacktrace", True, False, True),
    ("type", True, False, False), ("none", False, False, False)])
def test_an_unexpected_error_shows_what_the_operator_allows(details, shows_type, shows_message,
                                                            shows_trace):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_function(_raise_an_unexpected_error, args=(details,)).run()
    assert not at.exception and len(at.error) == 1
    shown = at.error[0].value
    assert shown.startswith("Cannot draw: ")
    assert ("RuntimeError" in shown) == shows_type
    assert ("secret detail" in shown) == shows_message
    assert (len(at.expander) == 1 and "secret detail" in at.code[0].value) == shows_trace


@pytest.fixture
def served_on():
    """Set Streamlit's ``server.address`` for one test (its config, as ``--server.address``)."""
    from streamlit import config
    before = config.get_option("server.address")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", before)


def test_host_paths_reach_only_a_visitor_at_this_machine(served_on, monkeypatch, tmp_path):
    from signseg_ui.serving import hide_host_paths
    text = ("put alexnet.pth at /root/.cache/torch/hub/checkpoints/alexnet.pth (from "
            "https://download.pytorch.org/models/alexnet.pth); cache at /srv/signseg/cache.")
    served_on("0.0.0.0")  # reachable by others, server paths off: file names only
    assert hide_host_paths(text) == ("put alexnet.pth at alexnet.pth (from "
                                     "https://download.pytorch.org/models/alexnet.pth); "
                                     "cache at cache.")
    monkeypatch.setenv("SIGNSEG_ALLOW_SERVER_PATHS", "1")  # the operator turned them on
    monkeypatch.setenv("SIGNSEG_DATA_ROOTS", str(tmp_path))
    assert hide_host_paths(text) == text
    monkeypatch.delenv("SIGNSEG_ALLOW_SERVER_PATHS")
    served_on("127.0.0.1")  # `make run`: only this machine can reach it
    assert hide_host_paths(text) == text
