"""What aigen sends to Gemini (WIRE.md A.1, A.2), for both clients, read off respx's calls."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen.providers.gemini import GeminiOptions, GeminiProvider, SafetySetting
from aigen.providers.openai import OpenAIOptions

from . import gemini_bodies as gb
from .conftest import API_KEY
from .images import jpeg, png, webp_extended, webp_lossless, webp_lossy

BASE = "https://generativelanguage.googleapis.com"
MAX_INT32 = 2**31 - 1


@pytest.fixture
def gemini() -> Any:
    """Any model's generateContent route, answering with an image."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(url__regex=rf"^{BASE}/v1beta/models/[^/]+:generateContent$")
        route.mock(return_value=httpx.Response(200, json=gb.image_answer()))
        yield route


def sent(route: Any, index: int = -1) -> dict[str, Any]:
    """The JSON body of one call the route saw."""
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


def config(route: Any, index: int = -1) -> dict[str, Any]:
    generation_config: dict[str, Any] = sent(route, index)["generationConfig"]
    return generation_config


def prompt_text(route: Any, index: int = -1) -> str:
    """The text of the (single) user turn's text part."""
    contents = sent(route, index)["contents"]
    assert len(contents) == 1
    texts = [part["text"] for part in contents[0]["parts"] if "text" in part]
    assert len(texts) == 1
    text: str = texts[0]
    return text


# -- endpoint, model, headers ----------------------------------------------------------


def test_default_model_url_and_headers(make_client: Any, gemini: Any) -> None:
    make_client().generate("A fox")
    request = gemini.calls[0].request
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert request.headers["x-goog-api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    # The key travels in the header only, never in the URL (which proxies log).
    assert API_KEY not in str(request.url)
    assert "key=" not in str(request.url)


def test_client_model_is_used(make_client: Any, gemini: Any) -> None:
    make_client(model="gemini-3-pro-image-preview").generate("A fox")
    url = str(gemini.calls[0].request.url)
    assert url == f"{BASE}/v1beta/models/gemini-3-pro-image-preview:generateContent"


def test_per_request_model_wins_over_the_client_default(make_client: Any, gemini: Any) -> None:
    client = make_client(model="gemini-3-pro-image-preview")
    client.generate("A fox", model="gemini-3.1-flash-image")
    client.generate("A fox")
    urls = [str(call.request.url) for call in gemini.calls]
    assert urls == [
        f"{BASE}/v1beta/models/gemini-3.1-flash-image:generateContent",
        f"{BASE}/v1beta/models/gemini-3-pro-image-preview:generateContent",
    ]


def test_body_is_one_user_turn_with_the_default_modalities(make_client: Any, gemini: Any) -> None:
    make_client().generate("A fox", rules_preamble=False)
    body = sent(gemini)
    assert body["contents"] == [{"role": "user", "parts": [{"text": "A fox"}]}]
    assert body["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]
    assert "safetySettings" not in body


# -- sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "ratio"),
    [
        (512, 512, "1:1"),
        (1024, 1024, "1:1"),
        (1100, 1000, "1:1"),
        (1280, 720, "16:9"),
        (1920, 1080, "16:9"),
        (1344, 768, "16:9"),
        (720, 1280, "9:16"),
        (1000, 3000, "9:16"),
        (1024, 768, "4:3"),
        (768, 1024, "3:4"),
        (2560, 1080, "21:9"),
        (3000, 1000, "21:9"),
        (800, 1000, "4:5"),
        (1000, 800, "5:4"),
        (600, 900, "2:3"),
        (900, 600, "3:2"),
    ],
)
def test_aspect_ratio_is_the_nearest_supported(
    make_client: Any, gemini: Any, width: int, height: int, ratio: str
) -> None:
    make_client().generate("A fox", width=width, height=height)
    assert config(gemini)["imageConfig"] == {"aspectRatio": ratio}


def test_no_image_config_without_a_size(make_client: Any, gemini: Any) -> None:
    make_client().generate("A fox")
    assert "imageConfig" not in config(gemini)


# -- seeds -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1234, 0, MAX_INT32])
def test_seed_is_sent_and_reported(make_client: Any, gemini: Any, seed: int) -> None:
    result = make_client().generate("A fox", seed=seed)
    assert config(gemini)["seed"] == seed
    assert result.seed == seed


def test_without_a_seed_a_random_one_is_sent_and_reported(make_client: Any, gemini: Any) -> None:
    client = make_client()
    results = [client.generate("A fox") for _ in range(3)]
    seeds = [config(gemini, i)["seed"] for i in range(3)]
    assert all(isinstance(seed, int) and 0 <= seed <= MAX_INT32 for seed in seeds)
    assert [result.seed for result in results] == seeds
    assert len(set(seeds)) > 1  # picked per call, not fixed


# -- input images ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "mime_type"),
    [
        (png(16, 16), "image/png"),
        (jpeg(640, 480), "image/jpeg"),
        (jpeg(640, 480, app_segments=3), "image/jpeg"),
        (webp_lossy(320, 240), "image/webp"),
        (webp_lossless(320, 240), "image/webp"),
        (webp_extended(320, 240), "image/webp"),
    ],
    ids=["png", "jpeg", "jpeg-exif", "webp-vp8", "webp-vp8l", "webp-vp8x"],
)
def test_input_image_is_inline_data_with_its_real_mime_type(
    make_client: Any, gemini: Any, image: bytes, mime_type: str
) -> None:
    make_client().generate("Put a boat on this lake", input_image=image, rules_preamble=False)
    (content,) = sent(gemini)["contents"]
    assert content["role"] == "user"
    text_part, image_part = content["parts"]
    assert text_part == {"text": "Put a boat on this lake"}
    assert image_part["inlineData"]["mimeType"] == mime_type
    assert base64.b64decode(image_part["inlineData"]["data"]) == image


# -- the prompt as sent ----------------------------------------------------------------


def test_rules_preamble_is_on_by_default_and_states_the_exact_pixels(
    make_client: Any, gemini: Any
) -> None:
    make_client().generate("Gaming thumbnail with 'EPIC WIN'", width=1280, height=720)
    text = prompt_text(gemini)
    assert text != "Gaming thumbnail with 'EPIC WIN'"
    assert text.endswith("Gaming thumbnail with 'EPIC WIN'")
    assert "1280x720" in text  # the pixels, not only the 16:9 sent in imageConfig
    assert len(text.splitlines()) > 2  # rules, not just a size line


def test_rules_preamble_without_a_size_states_no_pixels(make_client: Any, gemini: Any) -> None:
    make_client().generate("A fox")
    text = prompt_text(gemini)
    assert text.endswith("A fox")
    assert text != "A fox"
    assert "pixels" not in text


def test_no_preamble_sends_the_prompt_and_only_the_size_line(make_client: Any, gemini: Any) -> None:
    make_client().generate("A fox", width=1024, height=768, rules_preamble=False)
    text = prompt_text(gemini)
    assert text.startswith("A fox")
    extra = text.removeprefix("A fox").strip()
    assert "\n" not in extra  # one line
    assert "1024x768" in extra
    assert config(gemini)["imageConfig"] == {"aspectRatio": "4:3"}


def test_no_preamble_and_no_size_sends_the_prompt_as_written(make_client: Any, gemini: Any) -> None:
    prompt = "  A fox,\n in the snow  "
    make_client().generate(prompt, rules_preamble=False)
    assert prompt_text(gemini) == prompt


@pytest.mark.parametrize("rules", [True, False], ids=["rules", "no-rules"])
def test_a_refinement_states_the_exact_pixels_too(
    make_client: Any, gemini: Any, rules: bool
) -> None:
    history = [
        {"role": "user", "text": "A fox"},
        {"role": "model", "text": "Here it is.", "image_data": png(64, 48)},
    ]
    make_client().generate(
        "Now in the snow",
        width=1280,
        height=720,
        rules_preamble=rules,
        conversation_history=history,
    )
    *_, new_turn = sent(gemini)["contents"]
    assert new_turn["role"] == "user"
    (part,) = new_turn["parts"]
    text = part["text"]
    assert text.startswith("Now in the snow")
    extra = text.removeprefix("Now in the snow").strip()
    assert "\n" not in extra  # one line, no second preamble
    assert "exactly 1280x720 pixels" in extra
    assert config(gemini)["imageConfig"] == {"aspectRatio": "16:9"}


def test_a_refinement_without_a_size_is_sent_as_written(make_client: Any, gemini: Any) -> None:
    history = [
        {"role": "user", "text": "A fox"},
        {"role": "model", "text": "Here it is.", "image_data": png(64, 48)},
    ]
    make_client().generate("  Now in the snow ", conversation_history=history)
    assert sent(gemini)["contents"][-1]["parts"] == [{"text": "  Now in the snow "}]


# -- GeminiOptions ---------------------------------------------------------------------


def test_safety_settings_are_sent_top_level(make_client: Any, gemini: Any) -> None:
    options = GeminiOptions(
        safety_settings=(
            SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_ONLY_HIGH"),
            SafetySetting(category="HARM_CATEGORY_DANGEROUS_CONTENT", threshold="BLOCK_NONE"),
        )
    )
    make_client().generate("A fox", options=options)
    body = sent(gemini)
    assert body["safetySettings"] == [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE"},
    ]
    assert "safetySettings" not in body["generationConfig"]


def test_image_size_goes_into_image_config(make_client: Any, gemini: Any) -> None:
    client = make_client(model="gemini-3-pro-image-preview")
    client.generate("A fox", width=1280, height=720, options=GeminiOptions(image_size="2K"))
    client.generate("A fox", options=GeminiOptions(image_size="4K"))
    assert config(gemini, 0)["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert config(gemini, 1)["imageConfig"] == {"imageSize": "4K"}


def test_aspect_ratio_option_overrides_the_nearest(make_client: Any, gemini: Any) -> None:
    client = make_client()
    client.generate("A fox", width=1280, height=720, options=GeminiOptions(aspect_ratio="21:9"))
    client.generate("A fox", options=GeminiOptions(aspect_ratio="3:4"))
    assert config(gemini, 0)["imageConfig"] == {"aspectRatio": "21:9"}
    assert config(gemini, 1)["imageConfig"] == {"aspectRatio": "3:4"}
    assert "1280x720" in prompt_text(gemini, 0)  # the pixels asked for are still stated


def test_response_modalities_option(make_client: Any, gemini: Any) -> None:
    make_client().generate("A fox", options=GeminiOptions(response_modalities=("IMAGE",)))
    assert config(gemini)["responseModalities"] == ["IMAGE"]


def test_provider_instance_options_are_client_wide_defaults(make_client: Any, gemini: Any) -> None:
    provider = GeminiProvider(
        options=GeminiOptions(
            image_size="2K",
            safety_settings=(SafetySetting(category="HARM_CATEGORY_HATE_SPEECH", threshold="OFF"),),
        )
    )
    client = make_client(provider=provider, model="gemini-3-pro-image-preview")
    client.generate("A fox")
    client.generate("A fox", width=512, height=512)
    for index in (0, 1):
        body = sent(gemini, index)
        assert body["generationConfig"]["imageConfig"]["imageSize"] == "2K"
        assert body["safetySettings"] == [
            {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"}
        ]
    assert config(gemini, 1)["imageConfig"]["aspectRatio"] == "1:1"


def test_per_request_options_win_over_the_provider_defaults(make_client: Any, gemini: Any) -> None:
    provider = GeminiProvider(options=GeminiOptions(image_size="2K"))
    client = make_client(provider=provider, model="gemini-3-pro-image-preview")
    client.generate("A fox", options=GeminiOptions(image_size="4K"))
    assert config(gemini)["imageConfig"]["imageSize"] == "4K"


class ElsewhereOptions(aigen.ProviderOptions):
    """Options of some other provider."""

    quality: str = "high"


@pytest.mark.parametrize("options", [ElsewhereOptions(), OpenAIOptions(quality="high")])
def test_options_of_another_provider_are_refused_before_sending(
    make_client: Any, gemini: Any, options: aigen.ProviderOptions
) -> None:
    with pytest.raises(aigen.ConfigurationError, match="GeminiOptions"):
        make_client().generate("A fox", options=options)
    assert not gemini.called


def test_provider_instance_with_options_of_another_provider_is_refused(
    make_client: Any, gemini: Any
) -> None:
    # The annotation says GeminiOptions, but a user without a type checker can pass anything:
    # the mistake must surface as a ConfigurationError, not an AttributeError mid-request.
    with pytest.raises(aigen.ConfigurationError, match="pass GeminiOptions"):
        GeminiProvider(options=ElsewhereOptions())  # type: ignore[arg-type]
    assert not gemini.called
