"""The image decoder: pybase64 (the `speedups` extra) or pydantic-core, read alike.

Whichever decoder is installed, an answer's image must come out the same, and what it
refuses must fall to the standard library's forgiving reading, with the same result or
the same error. Every test here runs with both decoders, for each provider and both
clients where a call is made.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import aigen
from aigen import _base64

from .images import png
from .test_properties import PROFILE

DECODERS = ["pybase64", "pydantic-core"]
IMAGE = png(24, 16)


@pytest.fixture(params=DECODERS)
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "pybase64" and _base64.pybase64 is None:
        pytest.fail("pybase64 is part of the test extra: pip install -e '.[test]'")
    monkeypatch.setattr(_base64, "DECODER", name)
    return name


def forgiving(text: str) -> bytes:
    """The standard library's reading, which the strict decoders must agree with."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_installed_decoder_is_the_fast_one() -> None:
    installed = importlib.util.find_spec("pybase64") is not None
    assert ("pybase64" if installed else "pydantic-core") == _base64.DECODER


@pytest.mark.parametrize(
    "encode",
    [
        base64.b64encode,
        base64.urlsafe_b64encode,
        lambda data: base64.b64encode(data).rstrip(b"="),
        lambda data: base64.urlsafe_b64encode(data).rstrip(b"="),
    ],
    ids=["standard", "url-safe", "standard unpadded", "url-safe unpadded"],
)
@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", b"\xff\xfe\xfd", bytes(range(256))])
def test_both_alphabets_decode_padded_or_not(decoder: str, encode: Any, data: bytes) -> None:
    assert _base64.decode_strict(encode(data).decode("ascii")) == data


@pytest.mark.parametrize(
    "text",
    ["aGVs bG8=", "aGVs\nbG8=", "%%%%", "a", "aGVsbG8=aGVs", "=aGV"],
)
def test_what_is_not_plain_base64_is_left_to_the_forgiving_reading(decoder: str, text: str) -> None:
    assert _base64.decode_strict(text) is None


@PROFILE
@given(
    st.one_of(
        st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=64).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
        st.text(alphabet="AQgw+/-_=\n *", max_size=24),
    )
)
@example("a+b-")  # both alphabets at once
@example("QR==")  # bits after the last byte that are not zero
def test_a_strict_decode_always_agrees_with_the_standard_library(text: str) -> None:
    for name in DECODERS:
        if name == "pybase64" and _base64.pybase64 is None:
            continue
        decoded = _base64._DECODERS[name](text)
        if decoded is None:
            continue
        try:
            expected = forgiving(text)
        except (binascii.Error, ValueError):
            pytest.fail(f"{name} decoded {text!r}, which the standard library refuses")
        assert decoded == expected, name


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(IMAGE).decode(),
        base64.urlsafe_b64encode(IMAGE).decode().rstrip("="),
        base64.encodebytes(IMAGE).decode(),  # wrapped lines: the forgiving reading's
    ],
    ids=["standard", "url-safe unpadded", "wrapped"],
)
def test_an_answer_reads_the_same_with_either_decoder(
    decoder: str, make_client: Any, kit: Any, api: Any, text: str
) -> None:
    api.mock(return_value=kit.image_payload(text))
    result = make_client(provider=kit.name).generate("x")
    assert result.image_data == IMAGE
    assert (result.width, result.height) == (24, 16)


def test_an_answer_that_is_not_base64_fails_the_same_with_either_decoder(
    decoder: str, make_client: Any, kit: Any, api: Any
) -> None:
    api.mock(return_value=kit.image_payload("%%% not base64 %%%"))
    with pytest.raises(aigen.GenerationError, match="not valid base64"):
        make_client(provider=kit.name).generate("x")


def test_a_pydantic_without_base64_bytes_leaves_decoding_to_the_standard_library(
    monkeypatch: pytest.MonkeyPatch, make_client: Any, kit: Any, api: Any
) -> None:
    # A pydantic from before `val_json_bytes` would hand back the text's own bytes: aigen
    # notices at the first decode and lets the standard library read every image.
    monkeypatch.setattr(_base64, "DECODER", "pydantic-core")
    monkeypatch.setattr(_base64, "_pydantic_core_reads_base64", lambda: False)
    assert _base64.decode_strict(base64.b64encode(IMAGE).decode()) is None
    api.mock(return_value=kit.image_payload(base64.b64encode(IMAGE).decode()))
    assert make_client(provider=kit.name).generate("x").image_data == IMAGE


@pytest.mark.parametrize("with_pybase64", [True, False], ids=["pybase64", "stdlib"])
@pytest.mark.parametrize("data", [b"", b"\xfb\xff", bytes(range(256)), IMAGE])
def test_images_sent_back_are_standard_padded_base64(
    monkeypatch: pytest.MonkeyPatch, with_pybase64: bool, data: bytes
) -> None:
    if not with_pybase64:
        monkeypatch.setattr(_base64, "pybase64", None)
    assert _base64.encode(data) == base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(IMAGE).decode(),
        base64.urlsafe_b64encode(IMAGE).decode().rstrip("="),
        base64.encodebytes(IMAGE).decode(),
    ],
    ids=["standard", "url-safe unpadded", "wrapped"],
)
def test_a_saved_turn_reads_its_image_alike_with_either_decoder(decoder: str, text: str) -> None:
    turn = aigen.Turn(role="model", image_data=text)
    assert turn.image_data == IMAGE
    assert aigen.Turn.model_validate_json(turn.model_dump_json()) == turn
