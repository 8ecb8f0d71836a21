"""What aigen sends to OpenAI's Images API and how it reads the answers (WIRE.md D, E).

Every client test runs with `Client` and `AsyncClient` (`make_client`), against respx
routes for `/v1/images/generations` and `/v1/images/edits`. Multipart bodies are parsed
with the stdlib `email` parser, so field names, file names and content types are checked
part by part, not by searching the raw bytes.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
import pydantic
import pytest
import respx

import aigen
from aigen._models import RateLimitInfo
from aigen.providers.gemini import GeminiOptions
from aigen.providers.openai import (
    OpenAIOptions,
    OpenAIProvider,
    openai_size,
    parse_go_duration,
    parse_rate_limit_headers,
)

from .conftest import API_KEY, FakeTime
from .images import jpeg, png, webp_extended, webp_lossless, webp_lossy

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the deterministic sweeps below still run
    HAVE_HYPOTHESIS = False
else:
    HAVE_HYPOTHESIS = True

BASE = "https://api.openai.com"
GENERATIONS = f"{BASE}/v1/images/generations"
EDITS = f"{BASE}/v1/images/edits"
RULES_MARK = "Follow these rules"  # the first words of aigen's rules preamble

MAX_SIDE = 16_384  # GenerationRequest's own bound on width and height
FIXED_SIZES = {
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536"},
    "gpt-image-1.5": {"1024x1024", "1536x1024", "1024x1536"},
    "gpt-image-1-mini": {"1024x1024", "1536x1024", "1024x1536"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}


# -- answers OpenAI gives --------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer(
    image: bytes | None = None,
    *,
    request_id: str = "req_ok",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    """A 200 from either endpoint (WIRE.md D.4), gpt-image style unless `body` says else."""
    content: dict[str, Any] = {
        "created": 1767225600,
        "data": [{"b64_json": b64(image or png(64, 32))}],
        **body,
    }
    return httpx.Response(
        200, json=content, headers={"x-request-id": request_id, **(headers or {})}
    )


def error(
    status: int,
    message: str,
    code: str | None,
    kind: str = "invalid_request_error",
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    """An error in OpenAI's envelope (WIRE.md D.6), with an `x-request-id`."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code, **extra}}
    return httpx.Response(status, json=body, headers={"x-request-id": "req_err", **(headers or {})})


def rate_limited(message: str = "Rate limit reached for images per min (IPM).", **kw: Any) -> Any:
    return error(429, message, "rate_limit_exceeded", "requests", **kw)


class Routes(NamedTuple):
    generations: respx.Route
    edits: respx.Route


@pytest.fixture
def openai() -> Any:
    """Both image endpoints, answering with an image unless re-mocked."""
    with respx.mock(assert_all_called=False) as router:
        generations = router.post(GENERATIONS).mock(side_effect=lambda _: answer())
        edits = router.post(EDITS).mock(side_effect=lambda _: answer())
        yield Routes(generations, edits)


def client(make_client: Any, **kwargs: Any) -> Any:
    return make_client(provider="openai", **kwargs)


# -- reading what was sent -------------------------------------------------------------


def sent_json(route: respx.Route, index: int = -1) -> dict[str, Any]:
    request = route.calls[index].request
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.content)
    return body


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    files: list[Part]

    def files_named(self, name: str) -> list[Part]:
        return [part for part in self.files if part.name == name]


def sent_form(route: respx.Route, index: int = -1) -> Form:
    """Parse the multipart body of one call with the stdlib MIME parser."""
    request = route.calls[index].request
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.content,
        policy=email.policy.HTTP,
    )
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/form-data"
    assert not message.defects
    fields: dict[str, str] = {}
    files: list[Part] = []
    for raw in message.iter_parts():
        assert raw.get_content_disposition() == "form-data"
        name = raw.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        data = raw.get_payload(decode=True)
        assert isinstance(data, bytes)
        filename = raw.get_filename()
        if filename is None:
            assert name not in fields, f"form field {name!r} sent twice"
            fields[name] = data.decode()
        else:
            files.append(Part(name, filename, raw.get_content_type(), data))
    return Form(fields, files)


def free_size(text: str) -> tuple[int, int]:
    width, height = text.split("x")
    return int(width), int(height)


# == generations: JSON ==================================================================


def test_generation_is_a_json_post_with_a_bearer_key(make_client: Any, openai: Routes) -> None:
    client(make_client).generate("A fox", rules_preamble=False)
    assert openai.generations.call_count == 1
    assert not openai.edits.called
    request = openai.generations.calls[0].request
    assert request.method == "POST"
    assert str(request.url) == GENERATIONS
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in str(request.url)
    # Nothing but what was asked for: no size, and never seed / n / response_format.
    assert sent_json(openai.generations) == {"model": "gpt-image-2", "prompt": "A fox"}


def test_client_model_and_per_request_model(make_client: Any, openai: Routes) -> None:
    make_client(provider="openai").generate("A fox")
    chosen = client(make_client, model="gpt-image-1.5")
    chosen.generate("A fox")
    chosen.generate("A fox", model="gpt-image-1-mini")
    chosen.generate("A fox")
    models = [sent_json(openai.generations, i)["model"] for i in range(4)]
    assert models == ["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-1.5"]


def test_rules_preamble_by_default_with_the_exact_size(make_client: Any, openai: Routes) -> None:
    client(make_client).generate("Thumbnail with 'EPIC WIN'", width=1280, height=720)
    body = sent_json(openai.generations)
    prompt = body["prompt"]
    assert prompt.startswith(RULES_MARK)
    assert prompt.endswith("Thumbnail with 'EPIC WIN'")
    assert "1280x720" in prompt
    assert body["size"] == "1280x720"


def test_rules_preamble_off_keeps_only_the_size_line(make_client: Any, openai: Routes) -> None:
    api = client(make_client)
    api.generate("A fox", width=1000, height=3000, rules_preamble=False)
    api.generate("  A fox,\n in snow ", rules_preamble=False)
    with_size = sent_json(openai.generations, 0)["prompt"]
    assert with_size.startswith("A fox")
    extra = with_size.removeprefix("A fox").strip()
    assert "\n" not in extra
    assert "1000x3000" in extra  # the pixels asked for, not the size sent
    assert RULES_MARK not in with_size
    assert sent_json(openai.generations, 1)["prompt"] == "  A fox,\n in snow "


@pytest.mark.parametrize(
    "model", ["gpt-image-2", "gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini"]
)
def test_gpt_image_models_get_no_seed_n_or_response_format(
    make_client: Any, openai: Routes, model: str
) -> None:
    result = client(make_client).generate("A fox", model=model, width=1024, height=1024, seed=42)
    body = sent_json(openai.generations)
    assert set(body) == {"model", "prompt", "size"}
    assert body["model"] == model
    assert body["size"] == "1024x1024"
    assert result.seed is None  # the seed never reached the model, so none is reported


@pytest.mark.parametrize(("model", "size"), [("dall-e-3", "1792x1024"), ("dall-e-2", "1024x1024")])
def test_dall_e_models_ask_for_base64(
    make_client: Any, openai: Routes, model: str, size: str
) -> None:
    result = client(make_client).generate("A fox", model=model, width=1280, height=720, seed=7)
    body = sent_json(openai.generations)
    assert body["response_format"] == "b64_json"
    assert body["size"] == size
    assert "seed" not in body
    assert "n" not in body
    assert result.seed is None


def test_no_size_without_width_and_height(make_client: Any, openai: Routes) -> None:
    client(make_client).generate("A fox")
    assert "size" not in sent_json(openai.generations)


@pytest.mark.parametrize(
    ("model", "width", "height", "size"),
    [
        ("gpt-image-2", 5000, 5000, "2160x2160"),
        ("gpt-image-2", 720, 1280, "720x1280"),
        ("gpt-image-1", 1280, 720, "1536x1024"),
        ("gpt-image-1-mini", 720, 1280, "1024x1536"),
        ("dall-e-3", 720, 1280, "1024x1792"),
        ("dall-e-2", 300, 300, "256x256"),
    ],
)
def test_the_size_sent_is_the_models_nearest(
    make_client: Any, openai: Routes, model: str, width: int, height: int, size: str
) -> None:
    client(make_client, model=model).generate("A fox", width=width, height=height)
    assert sent_json(openai.generations)["size"] == size
    assert f"{width}x{height}" in sent_json(openai.generations)["prompt"]


def test_openai_api_key_from_the_environment(
    make_client: Any, openai: Routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    client(make_client, api_key=None).generate("A fox")
    assert openai.generations.calls[0].request.headers["authorization"] == "Bearer sk-from-env"


def test_provider_is_inferred_from_openai_api_key_alone(
    make_client: Any, openai: Routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-only-openai")
    api = make_client(api_key=None)
    assert api.provider.name == "openai"
    assert api.model == "gpt-image-2"
    result = api.generate("A fox")
    assert result.provider == "openai"
    assert openai.generations.calls[0].request.headers["authorization"] == "Bearer sk-only-openai"


def test_aigen_provider_picks_openai_when_both_keys_are_set(
    make_client: Any, openai: Routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-both")
    monkeypatch.setenv("AIGEN_PROVIDER", "openai")
    make_client(api_key=None).generate("A fox")
    assert openai.generations.calls[0].request.headers["authorization"] == "Bearer sk-both"


# == sizes: openai_size ================================================================


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (1280, 720, "1280x720"),
        (720, 1280, "720x1280"),
        (1024, 1024, "1024x1024"),
        (2048, 1152, "2048x1152"),
        (3840, 2160, "3840x2160"),
        (2160, 3840, "2160x3840"),
        (5000, 5000, "2160x2160"),
        (7680, 4320, "3840x2160"),
        (4320, 7680, "2160x3840"),
        (16384, 16384, "2160x2160"),
        (1030, 770, "1024x768"),
    ],
)
def test_gpt_image_2_sizes(width: int, height: int, size: str) -> None:
    assert openai_size("gpt-image-2", width, height) == size


def test_gpt_image_2_rounds_to_a_nearest_multiple_of_16() -> None:
    # 1000 lies exactly between 992 and 1008: either is a nearest multiple of 16.
    # (Today Python's round() breaks the tie to even: 992; 1016 and 1032 both give 1024.)
    assert openai_size("gpt-image-2", 1000, 1000) in {"992x992", "1008x1008"}
    assert openai_size("gpt-image-2", 1001, 999) == "1008x992"
    assert openai_size("gpt-image-2", 1010, 1010) == "1008x1008"
    assert openai_size("gpt-image-2", 990, 990) == "992x992"


@pytest.mark.parametrize(
    ("width", "height", "landscape"),
    [(4000, 1000, True), (100, 2000, False), (10000, 3000, True), (1000, 16384, False)],
)
def test_gpt_image_2_ratio_is_clamped_to_3_to_1(width: int, height: int, landscape: bool) -> None:
    w, h = free_size(openai_size("gpt-image-2", width, height))
    assert w % 16 == 0
    assert h % 16 == 0
    long_side, short_side = max(w, h), min(w, h)
    assert long_side <= 3 * short_side  # really within 1:3..3:1 after rounding
    assert long_side / short_side == pytest.approx(3, abs=0.1)  # and as close to the wish
    assert (w > h) is landscape
    assert long_side <= 3840
    assert short_side <= 2160


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (1280, 720, "1536x1024"),
        (720, 1280, "1024x1536"),
        (1000, 1000, "1024x1024"),
        (1100, 1000, "1024x1024"),
        (512, 512, "1024x1024"),
        (4000, 1000, "1536x1024"),
        (1000, 4000, "1024x1536"),
    ],
)
@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini"])
def test_gpt_image_1_family_fixed_sizes(model: str, width: int, height: int, size: str) -> None:
    assert openai_size(model, width, height) == size


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (1280, 720, "1792x1024"),
        (720, 1280, "1024x1792"),
        (1024, 900, "1024x1024"),
        (512, 512, "1024x1024"),
        (3000, 1000, "1792x1024"),
    ],
)
def test_dall_e_3_fixed_sizes(width: int, height: int, size: str) -> None:
    assert openai_size("dall-e-3", width, height) == size


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (64, 64, "256x256"),
        (300, 300, "256x256"),
        (400, 400, "512x512"),
        (600, 600, "512x512"),
        (800, 800, "1024x1024"),
        (4000, 4000, "1024x1024"),
        (1280, 720, "1024x1024"),  # only squares: the nearest by area
        (200, 800, "512x512"),
    ],
)
def test_dall_e_2_squares_by_area(width: int, height: int, size: str) -> None:
    assert openai_size("dall-e-2", width, height) == size


def check_free_size(width: int, height: int) -> None:
    """What every gpt-image-2 size must satisfy (SPEC "Providers", WIRE.md note)."""
    w, h = free_size(openai_size("gpt-image-2", width, height))
    assert w >= 16
    assert h >= 16
    assert w % 16 == 0
    assert h % 16 == 0
    assert max(w, h) <= 3 * min(w, h), (width, height, w, h)
    assert max(w, h) <= 3840
    assert min(w, h) <= 2160
    # Never turned on its side.
    if width > height:
        assert w >= h
    elif height > width:
        assert h >= w
    # A size the model takes as it is is sent as it is.
    if (
        width % 16 == 0
        and height % 16 == 0
        and max(width, height) <= min(3 * min(width, height), 3840)
        and min(width, height) <= 2160
    ):
        assert (w, h) == (width, height)


def check_fixed_size(model: str, width: int, height: int) -> None:
    size = openai_size(model, width, height)
    assert size in FIXED_SIZES[model]
    w, h = free_size(size)
    # Clearly wide or tall wishes keep their orientation where the model has one (the
    # break-even ratios are sqrt(1.5) and sqrt(1.75), both below 1.35).
    if width / height >= 1.35 and model != "dall-e-2":
        assert w > h
    if height / width >= 1.35 and model != "dall-e-2":
        assert h > w


_SWEEP = [1, 15, 16, 17, 100, 333, 720, 1000, 1024, 1080, 1500, 2160, 2161, 3000, 3840, 5000]


@pytest.mark.parametrize(("width", "height"), list(itertools.product(_SWEEP, _SWEEP)))
def test_free_sizes_sweep(width: int, height: int) -> None:
    check_free_size(width, height)
    for model in FIXED_SIZES:
        check_fixed_size(model, width, height)


if HAVE_HYPOTHESIS:
    sides = st.integers(min_value=1, max_value=MAX_SIDE)

    @settings(max_examples=500, deadline=None, database=None, derandomize=True)
    @given(width=sides, height=sides)
    def test_gpt_image_2_sizes_are_always_valid(width: int, height: int) -> None:
        check_free_size(width, height)

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(
        short=st.integers(min_value=1, max_value=135),
        ratio_tenths=st.integers(min_value=10, max_value=30),
        landscape=st.booleans(),
    )
    def test_gpt_image_2_valid_sizes_are_sent_unchanged(
        short: int, ratio_tenths: int, landscape: bool
    ) -> None:
        short_side = short * 16
        long_side = min(3840, math.floor(short_side * ratio_tenths / 10 / 16) * 16)
        width, height = (long_side, short_side) if landscape else (short_side, long_side)
        assert openai_size("gpt-image-2", width, height) == f"{width}x{height}"

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(model=st.sampled_from(sorted(FIXED_SIZES)), width=sides, height=sides)
    def test_fixed_size_models_always_get_one_of_their_sizes(
        model: str, width: int, height: int
    ) -> None:
        check_fixed_size(model, width, height)


# == OpenAIOptions =====================================================================


def test_options_are_sent_as_typed_json_fields(make_client: Any, openai: Routes) -> None:
    options = OpenAIOptions(
        quality="high",
        background="transparent",
        output_format="webp",
        output_compression=85,
        moderation="low",
        user="user-1234",
    )
    client(make_client).generate("A mug", options=options, rules_preamble=False)
    assert sent_json(openai.generations) == {
        "model": "gpt-image-2",
        "prompt": "A mug",
        "quality": "high",
        "background": "transparent",
        "output_format": "webp",
        "output_compression": 85,
        "moderation": "low",
        "user": "user-1234",
    }


def test_edit_only_options_stay_off_generations(make_client: Any, openai: Routes) -> None:
    client(make_client).generate("A mug", options=OpenAIOptions(input_fidelity="high"))
    assert "input_fidelity" not in sent_json(openai.generations)


def test_a_mask_with_nothing_to_edit_is_refused_before_sending(
    make_client: Any, openai: Routes
) -> None:
    with pytest.raises(aigen.ConfigurationError, match="input_image"):
        client(make_client).generate("A mug", options=OpenAIOptions(mask=png()))
    assert not openai.generations.called
    assert not openai.edits.called


def test_provider_options_are_defaults_and_request_options_win(
    make_client: Any, openai: Routes
) -> None:
    provider = OpenAIProvider(options=OpenAIOptions(quality="low", moderation="low"))
    api = make_client(provider=provider)
    api.generate("A mug")
    api.generate("A mug", options=OpenAIOptions(quality="high"))
    first, second = sent_json(openai.generations, 0), sent_json(openai.generations, 1)
    assert (first["quality"], first["moderation"]) == ("low", "low")
    assert second["quality"] == "high"
    assert "moderation" not in second  # request options replace the defaults as a whole


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"output_compression": 50}, id="compression-without-format"),
        pytest.param({"output_compression": 50, "output_format": "png"}, id="compression-png"),
        pytest.param({"background": "transparent", "output_format": "jpeg"}, id="transparent-jpeg"),
        pytest.param({"output_compression": -1, "output_format": "jpeg"}, id="compression-low"),
        pytest.param({"output_compression": 101, "output_format": "webp"}, id="compression-high"),
        pytest.param({"mask": jpeg(8, 8)}, id="jpeg-mask"),
        pytest.param({"mask": webp_lossy(8, 8)}, id="webp-mask"),
        pytest.param({"mask": b"not an image at all"}, id="garbage-mask"),
        pytest.param({"quality": "ultra"}, id="unknown-quality"),
        pytest.param({"style": "vivid"}, id="unknown-option"),
        pytest.param({"size": "1024x1024"}, id="size-is-not-an-option"),
    ],
)
def test_invalid_options_fail_before_any_request(
    make_client: Any, openai: Routes, kwargs: dict[str, Any]
) -> None:
    api = client(make_client)
    with pytest.raises(pydantic.ValidationError):
        api.generate("A mug", input_image=png(8, 8), options=OpenAIOptions(**kwargs))
    assert not openai.generations.called
    assert not openai.edits.called


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_compression": 0, "output_format": "jpeg"},
        {"output_compression": 100, "output_format": "webp"},
        {"background": "transparent", "output_format": "png"},
        {"background": "transparent", "output_format": "webp"},
        {"background": "transparent"},
        {"mask": b64(png(8, 8))},  # base64 text of a PNG is a PNG
    ],
)
def test_valid_option_combinations(kwargs: dict[str, Any]) -> None:
    OpenAIOptions(**kwargs)


def test_gemini_options_are_refused_before_any_request(make_client: Any, openai: Routes) -> None:
    with pytest.raises(aigen.ConfigurationError, match="OpenAIOptions"):
        client(make_client).generate("A fox", options=GeminiOptions(image_size="2K"))
    with pytest.raises(aigen.ConfigurationError, match="OpenAIOptions"):
        client(make_client).generate("A fox", input_image=png(), options=GeminiOptions())
    assert not openai.generations.called
    assert not openai.edits.called


def test_provider_instance_with_gemini_options_is_refused(make_client: Any, openai: Routes) -> None:
    # A user without a type checker can pass anything: a ConfigurationError, not an
    # AttributeError, before anything is sent (refusing at construction is fine too).
    def generate_with_gemini_defaults() -> None:
        provider = OpenAIProvider(options=GeminiOptions())  # type: ignore[arg-type]
        make_client(provider=provider).generate("A fox")

    with pytest.raises(aigen.ConfigurationError):
        generate_with_gemini_defaults()
    assert not openai.generations.called


# == edits: multipart ==================================================================


@pytest.mark.parametrize(
    ("image", "content_type", "extension"),
    [
        (png(16, 16), "image/png", ".png"),
        (jpeg(640, 480), "image/jpeg", ".jpg"),
        (jpeg(640, 480, app_segments=3), "image/jpeg", ".jpg"),
        (webp_lossy(320, 240), "image/webp", ".webp"),
        (webp_lossless(320, 240), "image/webp", ".webp"),
        (webp_extended(320, 240), "image/webp", ".webp"),
    ],
)
def test_input_image_is_a_multipart_edit_with_its_real_type(
    make_client: Any, openai: Routes, image: bytes, content_type: str, extension: str
) -> None:
    client(make_client).generate(
        "Put a boat on this lake", input_image=image, width=1536, height=1024
    )
    assert not openai.generations.called
    assert openai.edits.call_count == 1
    request = openai.edits.calls[0].request
    assert str(request.url) == EDITS
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    form = sent_form(openai.edits)
    assert set(form.fields) == {"model", "prompt", "size"}
    assert form.fields["model"] == "gpt-image-2"
    assert form.fields["size"] == "1536x1024"
    assert form.fields["prompt"].startswith(RULES_MARK)  # a first turn: the rules apply
    assert form.fields["prompt"].endswith("Put a boat on this lake")
    assert "1536x1024" in form.fields["prompt"]
    (part,) = form.files
    assert part.name == "image"
    assert part.content_type == content_type
    assert part.filename is not None
    assert part.filename.endswith(extension)
    assert part.data == image


def test_edit_options_and_mask(make_client: Any, openai: Routes) -> None:
    mask = png(16, 16, (0, 0, 0))
    options = OpenAIOptions(
        input_fidelity="high",
        quality="medium",
        output_format="jpeg",
        output_compression=70,
        background="opaque",
        user="user-9",
        mask=mask,
    )
    photo = jpeg(16, 16)
    client(make_client, model="gpt-image-1").generate(
        "Add a hat", input_image=photo, options=options, rules_preamble=False
    )
    form = sent_form(openai.edits)
    assert form.fields == {
        "model": "gpt-image-1",
        "prompt": "Add a hat",
        "input_fidelity": "high",
        "quality": "medium",
        "output_format": "jpeg",
        "output_compression": "70",
        "background": "opaque",
        "user": "user-9",
    }
    (image,) = form.files_named("image")
    assert (image.content_type, image.data) == ("image/jpeg", photo)
    (mask_part,) = form.files_named("mask")
    assert mask_part.content_type == "image/png"
    assert mask_part.filename is not None
    assert mask_part.filename.endswith(".png")
    assert mask_part.data == mask
    assert len(form.files) == 2


def test_dall_e_2_edit_asks_for_base64(make_client: Any, openai: Routes) -> None:
    client(make_client, model="dall-e-2").generate("Add a hat", input_image=png(64, 64))
    form = sent_form(openai.edits)
    assert form.fields["response_format"] == "b64_json"
    assert form.fields["model"] == "dall-e-2"


# == conversations =====================================================================

FIRST = png(64, 36, (10, 20, 30))
SECOND = jpeg(64, 36)
THIRD = png(64, 36, (70, 80, 90))


def test_conversation_generates_then_edits_the_last_image(make_client: Any, openai: Routes) -> None:
    openai.generations.mock(side_effect=[answer(FIRST)])
    openai.edits.mock(side_effect=[answer(SECOND), answer(THIRD)])
    chat = client(make_client).conversation(width=1280, height=720)

    chat.send("Gaming thumbnail with bold text 'EPIC WIN'")
    opening = sent_json(openai.generations)
    assert opening["prompt"].startswith(RULES_MARK)
    assert opening["prompt"].endswith("Gaming thumbnail with bold text 'EPIC WIN'")
    assert opening["size"] == "1280x720"

    chat.send("Make the text bigger")
    assert openai.generations.call_count == 1
    second = sent_form(openai.edits, 0)
    (image,) = second.files
    assert (image.name, image.content_type, image.data) == ("image", "image/png", FIRST)
    assert second.fields["size"] == "1280x720"
    assert second.fields["model"] == "gpt-image-2"
    prompt = second.fields["prompt"]
    assert RULES_MARK not in prompt
    assert "EPIC WIN" not in prompt  # an edit carries only the new instruction
    assert prompt.startswith("Make the text bigger")
    extra = prompt.removeprefix("Make the text bigger").strip()
    assert extra == "" or ("\n" not in extra and "1280x720" in extra)

    logo = webp_lossy(32, 32)
    chat.send("Put this logo in the corner", input_image=logo)
    third = sent_form(openai.edits, 1)
    assert third.files_named("image") == []
    images = third.files_named("image[]")
    assert [(p.content_type, p.data) for p in images] == [
        ("image/jpeg", SECOND),  # the last model image first, with its real type
        ("image/webp", logo),
    ]
    assert [p.filename.rsplit(".", 1)[-1] for p in images if p.filename] == ["jpg", "webp"]
    assert third.fields["prompt"].startswith("Put this logo in the corner")
    assert RULES_MARK not in third.fields["prompt"]

    assert [turn.role for turn in chat.history] == ["user", "model"] * 3
    assert chat.history[-1].image_data == THIRD
    assert chat.history[-2].image_data == logo


def test_conversation_opening_with_an_image_edits_it(make_client: Any, openai: Routes) -> None:
    photo = jpeg(40, 30)
    openai.edits.mock(side_effect=[answer(FIRST), answer(SECOND)])
    chat = client(make_client).conversation()
    chat.send("Make it a watercolour", input_image=photo)
    chat.send("Now at night")
    assert not openai.generations.called
    first, second = sent_form(openai.edits, 0), sent_form(openai.edits, 1)
    assert [(p.name, p.data) for p in first.files] == [("image", photo)]
    assert first.fields["prompt"].startswith(RULES_MARK)
    assert "size" not in first.fields
    # The input photo is in the history, but the edit works on the model's last image.
    assert [(p.name, p.data) for p in second.files] == [("image", FIRST)]
    assert second.fields["prompt"] == "Now at night"


@pytest.mark.parametrize("rules", [True, False], ids=["rules", "no-rules"])
def test_every_refinement_states_the_exact_size(
    make_client: Any, openai: Routes, rules: bool
) -> None:
    openai.generations.mock(side_effect=[answer(FIRST)])
    openai.edits.mock(side_effect=[answer(SECOND), answer(THIRD)])
    chat = client(make_client).conversation(width=1280, height=720, rules_preamble=rules)
    chat.send("Thumbnail 'EPIC WIN'")
    chat.send("Bigger text")
    chat.send("More glow")
    assert "1280x720" in sent_json(openai.generations)["prompt"]
    for index, prompt in ((0, "Bigger text"), (1, "More glow")):
        sent = sent_form(openai.edits, index).fields["prompt"]
        assert sent.startswith(prompt)
        extra = sent.removeprefix(prompt).strip()
        assert "\n" not in extra  # one line, no second preamble
        assert "exactly 1280x720 pixels" in extra


# == answers ===========================================================================


def test_answer_fields(make_client: Any, openai: Routes) -> None:
    image = jpeg(300, 200)  # labelled png below: the bytes are the truth
    openai.generations.mock(
        return_value=answer(
            image,
            request_id="req_0123456789abcdef",
            output_format="png",
            quality="high",
            size="1536x1024",
            usage={
                "input_tokens": 52,
                "input_tokens_details": {"text_tokens": 52, "image_tokens": 0},
                "output_tokens": 6208,
                "total_tokens": 6260,
            },
        )
    )
    result = client(make_client).generate("A fox", seed=3)
    assert result.image_data == image
    assert (result.mime_type, result.width, result.height) == ("image/jpeg", 300, 200)
    assert result.request_id == "req_0123456789abcdef"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (52, 6208)
    assert result.usage.total_tokens == 6260
    assert (result.provider, result.model) == ("openai", "gpt-image-2")
    assert result.seed is None
    assert result.text is None
    assert result.rate_limit is None  # no x-ratelimit-* headers were sent
    assert result.attempts == 1


def test_revised_prompt_becomes_text(make_client: Any, openai: Routes) -> None:
    openai.generations.mock(
        return_value=httpx.Response(
            200,
            json={
                "created": 1,
                "data": [{"b64_json": b64(png(32, 32)), "revised_prompt": "A red fox, snow."}],
            },
        )
    )
    result = client(make_client, model="dall-e-3").generate("A fox")
    assert result.text == "A red fox, snow."
    assert result.request_id is None
    assert result.usage.total_tokens is None


RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}


def test_rate_limit_headers_on_the_response(make_client: Any, openai: Routes) -> None:
    openai.generations.mock(return_value=answer(headers=RATE_LIMIT_HEADERS))
    result = client(make_client).generate("A fox")
    assert result.rate_limit == RateLimitInfo(
        limit_requests=60,
        remaining_requests=59,
        reset_requests=1.0,
        limit_tokens=150000,
        remaining_tokens=149984,
        reset_tokens=360.0,
    )


def test_garbage_rate_limit_headers_read_as_none(make_client: Any, openai: Routes) -> None:
    garbage = {
        "x-ratelimit-limit-requests": "lots",
        "x-ratelimit-remaining-requests": "-1",
        "x-ratelimit-reset-requests": "soon",
        "x-ratelimit-limit-tokens": "1e5",
        "x-ratelimit-remaining-tokens": "12",
        "x-ratelimit-reset-tokens": "6m0",
    }
    openai.generations.mock(return_value=answer(headers=garbage))
    info = client(make_client).generate("A fox").rate_limit
    assert info is not None
    assert info.remaining_tokens == 12
    assert (info.limit_requests, info.remaining_requests, info.reset_requests) == (None,) * 3
    assert (info.limit_tokens, info.reset_tokens) == (None, None)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("\u00b9\u00b2", id="superscript-twelve"),
        " 5 0 ",
        "+5",
        "5.0",
    ],
)
def test_odd_rate_limit_integers_read_as_none(value: str) -> None:
    info = parse_rate_limit_headers({"x-ratelimit-limit-requests": value})
    assert info is not None
    assert info.limit_requests is None


def test_superscript_digits_in_a_header_do_not_break_the_call(
    make_client: Any, openai: Routes
) -> None:
    # b"\xb2" decodes (latin-1) to SUPERSCRIPT TWO: a proxy's junk byte, not a number.
    openai.generations.mock(
        return_value=httpx.Response(
            200,
            headers=[(b"x-ratelimit-remaining-requests", b"\xb2")],
            json={"created": 1, "data": [{"b64_json": b64(png())}]},
        )
    )
    result = client(make_client).generate("A fox")
    assert result.rate_limit is not None
    assert result.rate_limit.remaining_requests is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("0s", 0.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1h2m3.5s", 3723.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        (" 7s ", 7.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "soon", "10", "1x", "-1s", "1.5.3s", "s", "ms", "1m30", "6 m", "1s garbage"]
)
def test_go_duration_garbage_is_none(text: str) -> None:
    assert parse_go_duration(text) is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param([{"url": "https://oaidalleapiprodscus.blob/x.png"}], "URL", id="url-only"),
        pytest.param([], "data", id="empty-data"),
        pytest.param(None, "data", id="no-data"),
        pytest.param([{"revised_prompt": "A fox"}], "image data", id="no-image"),
    ],
)
def test_answers_without_image_data_are_generation_errors(
    make_client: Any, openai: Routes, data: Any, match: str
) -> None:
    body: dict[str, Any] = {"created": 1}
    if data is not None:
        body["data"] = data
    openai.generations.mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(aigen.GenerationError, match=match) as caught:
        client(make_client).generate("A fox")
    assert type(caught.value) is aigen.GenerationError
    assert openai.generations.call_count == 1


def test_url_answer_explains_what_to_do(make_client: Any, openai: Routes) -> None:
    openai.generations.mock(
        return_value=httpx.Response(200, json={"created": 1, "data": [{"url": "https://x/y"}]})
    )
    with pytest.raises(aigen.GenerationError) as caught:
        client(make_client, model="dall-e-3").generate("A fox")
    assert "response_format" in caught.value.message
    assert "b64_json" in caught.value.message


# == errors ============================================================================


@pytest.mark.parametrize(
    ("stage_sent", "stage", "categories"),
    [("input", "prompt", ["violence"]), ("output", "output", ["sexual", "self-harm"])],
)
def test_moderation_blocked_with_details(
    make_client: Any,
    openai: Routes,
    fake_time: FakeTime,
    stage_sent: str,
    stage: str,
    categories: list[str],
) -> None:
    openai.generations.mock(
        return_value=error(
            400,
            "Your request was rejected by the safety system. If you believe this is an error, "
            "contact us at help.openai.com and include the request ID 3f1c. "
            "safety_violations=[violence].",
            "moderation_blocked",
            "image_generation_user_error",
            moderation_details={"moderation_stage": stage_sent, "categories": categories},
        )
    )
    with pytest.raises(aigen.ContentPolicyError) as caught:
        client(make_client).generate("A fox")
    blocked = caught.value
    assert blocked.reason == "moderation_blocked"
    assert blocked.stage == stage
    assert blocked.categories == categories  # the details win over the message
    assert blocked.request_id == "req_err"
    assert blocked.provider == "openai"
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


def test_moderation_blocked_categories_from_the_message(
    make_client: Any, openai: Routes, fake_time: FakeTime
) -> None:
    openai.edits.mock(
        return_value=error(
            400,
            "Your request was rejected by the safety system. safety_violations=[sexual, violence].",
            "moderation_blocked",
            "user_error",
        )
    )
    with pytest.raises(aigen.ContentPolicyError) as caught:
        client(make_client).generate("A fox", input_image=png())
    assert caught.value.categories == ["sexual", "violence"]
    assert caught.value.stage == "prompt"
    assert caught.value.reason == "moderation_blocked"
    assert (openai.edits.call_count, fake_time.sleeps) == (1, [])


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "content_policy_violation",
            "Your request was rejected as a result of our safety system. Your prompt may "
            "contain text that is not allowed by our safety system.",
        ),
        (None, "Your request was rejected as a result of our safety system."),
    ],
)
def test_dall_e_content_policy_violation(
    make_client: Any, openai: Routes, fake_time: FakeTime, code: str | None, message: str
) -> None:
    openai.generations.mock(return_value=error(400, message, code))
    with pytest.raises(aigen.ContentPolicyError) as caught:
        client(make_client, model="dall-e-3").generate("A fox")
    assert caught.value.stage == "prompt"
    assert caught.value.categories == []
    assert caught.value.request_id == "req_err"
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


@pytest.mark.parametrize("code", ["insufficient_quota", "billing_hard_limit_reached"])
def test_exhausted_quota_is_never_retried(
    make_client: Any, openai: Routes, fake_time: FakeTime, code: str
) -> None:
    openai.generations.mock(
        return_value=error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            code,
            "insufficient_quota",
            headers={"retry-after": "2", **RATE_LIMIT_HEADERS},
        )
    )
    with pytest.raises(aigen.QuotaExceededError) as caught:
        client(make_client).generate("A fox")
    assert isinstance(caught.value, aigen.RateLimitError)
    assert caught.value.status_code == 429
    assert caught.value.request_id == "req_err"
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


@pytest.mark.parametrize(
    ("headers", "message", "wait"),
    [
        pytest.param({"retry-after-ms": "1500"}, None, 1.5, id="retry-after-ms"),
        pytest.param({"retry-after": "7"}, None, 7.0, id="retry-after"),
        pytest.param(
            {},
            "Rate limit reached for gpt-image-1 in organization org-x on images per min (IPM): "
            "Limit 5, Used 5, Requested 1. Please try again in 12s. Visit the docs.",
            12.0,
            id="message-in-12s",
        ),
        pytest.param(
            {},
            "You've exceeded the rate limit, please slow down and try again after 51.84 seconds.",
            51.84,
            id="message-after-seconds",
        ),
        pytest.param({}, "Please try again in 480ms.", 0.48, id="message-ms"),
        pytest.param({"retry-after": "3"}, "Please try again in 12s.", 12.0, id="longest-wins"),
    ],
)
def test_rate_limit_hints_are_obeyed(
    make_client: Any,
    openai: Routes,
    fake_time: FakeTime,
    headers: dict[str, str],
    message: str | None,
    wait: float,
) -> None:
    limited = rate_limited(message, headers=headers) if message else rate_limited(headers=headers)
    openai.generations.mock(side_effect=[limited, answer()])
    result = client(make_client).generate("A fox")
    assert result.attempts == 2
    assert fake_time.sleeps == [pytest.approx(wait)]


def test_rate_limit_error_carries_hint_and_headers(
    make_client: Any, openai: Routes, fake_time: FakeTime
) -> None:
    openai.generations.mock(
        return_value=rate_limited(
            "Please try again in 2s.",
            headers={**RATE_LIMIT_HEADERS, "x-ratelimit-remaining-requests": "0"},
        )
    )
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client).generate("A fox")
    limited = caught.value
    assert type(limited) is aigen.RateLimitError
    assert limited.retry_after == 2.0
    assert limited.request_id == "req_err"
    assert limited.rate_limit is not None
    assert limited.rate_limit.remaining_requests == 0
    assert limited.rate_limit.reset_tokens == 360.0
    assert limited.attempts == 3
    assert fake_time.sleeps == [2.0, 2.0]


def test_bad_key_says_to_check_openai_api_key(
    make_client: Any, openai: Routes, fake_time: FakeTime
) -> None:
    openai.generations.mock(
        return_value=error(
            401,
            "Incorrect API key provided: sk-abc***wxyz. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        )
    )
    with pytest.raises(aigen.AuthenticationError) as caught:
        client(make_client).generate("A fox")
    assert "OPENAI_API_KEY" in caught.value.message
    assert caught.value.status_code == 401
    assert caught.value.request_id == "req_err"
    assert "req_err" in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


def test_unverified_organization_is_an_authentication_error(
    make_client: Any, openai: Routes, fake_time: FakeTime
) -> None:
    openai.generations.mock(
        return_value=error(
            403,
            "Your organization must be verified to use the model `gpt-image-1`. Please go to: "
            "https://platform.openai.com/settings/organization/general and click on Verify "
            "Organization.",
            None,
        )
    )
    with pytest.raises(aigen.AuthenticationError) as caught:
        client(make_client, model="gpt-image-1").generate("A fox")
    assert caught.value.status_code == 403
    assert "Verify Organization" in caught.value.message
    assert caught.value.request_id == "req_err"
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


def test_unknown_model_is_named_in_the_error(
    make_client: Any, openai: Routes, fake_time: FakeTime
) -> None:
    openai.generations.mock(
        return_value=error(
            404,
            "The model does not exist or you do not have access to it.",
            "model_not_found",
        )
    )
    with pytest.raises(aigen.NotFoundError) as caught:
        client(make_client).generate("A fox", model="gpt-image-9")
    assert "gpt-image-9" in caught.value.message
    assert caught.value.request_id == "req_err"
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


def test_other_400_is_a_bad_request_with_the_servers_words(
    make_client: Any, openai: Routes
) -> None:
    openai.edits.mock(
        return_value=error(
            400, "Invalid value: 'ultra'. Supported values are: 'low'.", "invalid_value"
        )
    )
    with pytest.raises(aigen.BadRequestError) as caught:
        client(make_client).generate("A fox", input_image=png())
    assert "Invalid value: 'ultra'" in caught.value.message
    assert caught.value.request_id == "req_err"
    assert caught.value.body["error"]["code"] == "invalid_value"
    assert openai.edits.call_count == 1


def test_x_should_retry_false_is_obeyed(
    make_client: Any, openai: Routes, fake_time: FakeTime
) -> None:
    # WIRE.md E (OpenAI): "`x-should-retry` header | obey".
    openai.generations.mock(
        return_value=error(
            503,
            "The engine is currently overloaded.",
            None,
            "server_error",
            headers={"x-should-retry": "false"},
        )
    )
    with pytest.raises(aigen.ServerError):
        client(make_client).generate("A fox")
    assert (openai.generations.call_count, fake_time.sleeps) == (1, [])


def test_dall_e_3_cannot_edit(make_client: Any, openai: Routes) -> None:
    with pytest.raises(aigen.ConfigurationError, match="dall-e-3 cannot edit"):
        client(make_client, model="dall-e-3").generate("A mug", input_image=png())
    assert not openai.edits.called
