"""Multi-turn refinement on Gemini (SPEC "Multi-turn refinement", WIRE.md A.6), both clients."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen import AsyncConversation, Conversation, Turn, TurnPart

from . import gemini_bodies as gb
from .conftest import API_KEY
from .images import jpeg, png, webp_lossless

BASE = "https://generativelanguage.googleapis.com"
STAND_IN = "skip_thought_signature_validator"

FIRST_IMAGE = png(64, 36, (10, 20, 30))
SECOND_IMAGE = png(64, 36, (40, 50, 60))
THIRD_IMAGE = png(64, 36, (70, 80, 90))


def answer(image: bytes, n: int, **kwargs: Any) -> dict[str, Any]:
    """Gemini's n-th answer, with its own image, text and signatures."""
    kwargs.setdefault("text", f"Answer {n}.")
    return gb.image_answer(
        image,
        image_signature=f"sig-image-{n}".encode(),
        text_signature=f"sig-text-{n}".encode(),
        response_id=f"resp-{n}",
        **kwargs,
    )


ANSWERS = [answer(FIRST_IMAGE, 1), answer(SECOND_IMAGE, 2), answer(THIRD_IMAGE, 3)]


@pytest.fixture
def gemini() -> Any:
    """Any model's generateContent route; answers 1, 2, 3 in turn unless re-mocked."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(url__regex=rf"^{BASE}/v1beta/models/[^/]+:generateContent$")
        route.mock(side_effect=[httpx.Response(200, json=body) for body in ANSWERS])
        yield route


def contents(route: Any, index: int = -1) -> list[dict[str, Any]]:
    body = json.loads(route.calls[index].request.content)
    result: list[dict[str, Any]] = body["contents"]
    return result


def roles(route: Any, index: int = -1) -> list[str]:
    return [content["role"] for content in contents(route, index)]


def answered_content(body: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = body["candidates"][0]["content"]
    return content


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def size_line_of(text: str, prompt: str) -> str:
    """What aigen added after `prompt` in a refinement's text: one line, or nothing."""
    assert text.startswith(prompt), text
    extra = text.removeprefix(prompt).strip()
    assert "\n" not in extra, text
    return extra


# -- sending the history ---------------------------------------------------------------


def test_second_send_replays_the_first_exchange(make_client: Any, gemini: Any) -> None:
    chat = make_client().conversation(width=1280, height=720)
    first = chat.send("Gaming thumbnail with bold text 'EPIC WIN'")
    second = chat.send("Make the text bigger and add more glow")

    assert first.image_data == FIRST_IMAGE
    assert second.image_data == SECOND_IMAGE
    assert roles(gemini, 0) == ["user"]
    assert roles(gemini, 1) == ["user", "model", "user"]
    first_sent, model_turn, new_turn = contents(gemini, 1)
    assert first_sent == contents(gemini, 0)[0]
    # The model's answer goes back verbatim: same parts, same order, each signature on
    # the part it arrived on.
    assert model_turn == answered_content(ANSWERS[0])
    assert new_turn["role"] == "user"
    (new_part,) = new_turn["parts"]
    assert "1280x720" in size_line_of(new_part["text"], "Make the text bigger and add more glow")
    body = json.loads(gemini.calls[1].request.content)
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}


def test_model_turn_parts_carry_their_own_signatures(make_client: Any, gemini: Any) -> None:
    chat = make_client().conversation()
    chat.send("A watercolor fox")
    chat.send("Make it night time")
    text_part, image_part = contents(gemini, 1)[1]["parts"]
    assert text_part == {"text": "Answer 1.", "thoughtSignature": b64(b"sig-text-1")}
    assert image_part == {
        "inlineData": {"mimeType": "image/png", "data": b64(FIRST_IMAGE)},
        "thoughtSignature": b64(b"sig-image-1"),
    }


def test_image_first_answer_is_replayed_image_first(make_client: Any, gemini: Any) -> None:
    first = answer(FIRST_IMAGE, 1, image_first=True)
    gemini.side_effect = [httpx.Response(200, json=first), httpx.Response(200, json=ANSWERS[1])]
    chat = make_client().conversation()
    chat.send("A watercolor fox")
    chat.send("Make it night time")
    model_turn = contents(gemini, 1)[1]
    assert model_turn == answered_content(first)
    assert "inlineData" in model_turn["parts"][0]


def test_image_only_answer_is_replayed_as_one_signed_part(make_client: Any, gemini: Any) -> None:
    first = answer(FIRST_IMAGE, 1, text=None)
    gemini.side_effect = [httpx.Response(200, json=first), httpx.Response(200, json=ANSWERS[1])]
    chat = make_client().conversation()
    chat.send("A watercolor fox")
    chat.send("Make it night time")
    assert contents(gemini, 1)[1] == answered_content(first)


def test_thought_parts_are_not_replayed(make_client: Any, gemini: Any) -> None:
    first = answer(FIRST_IMAGE, 1)
    parts = first["candidates"][0]["content"]["parts"]
    answer_parts = list(parts)
    parts[:0] = [
        {"text": "Planning the composition...", "thought": True},
        {"inlineData": {"mimeType": "image/png", "data": b64(png(8, 8))}, "thought": True},
    ]
    gemini.side_effect = [httpx.Response(200, json=first), httpx.Response(200, json=ANSWERS[1])]
    chat = make_client().conversation()
    chat.send("A watercolor fox")
    chat.send("Make it night time")
    assert contents(gemini, 1)[1] == {"role": "model", "parts": answer_parts}


def test_interleaved_text_image_text_is_replayed_verbatim(make_client: Any, gemini: Any) -> None:
    # gemini-2.5-flash-image interleaves text and image parts; WIRE.md A.6: replay the
    # model turn verbatim, same parts in the same order.
    first = answer(FIRST_IMAGE, 1)
    first["candidates"][0]["content"]["parts"].append({"text": "Want another style?"})
    gemini.side_effect = [httpx.Response(200, json=first), httpx.Response(200, json=ANSWERS[1])]
    chat = make_client().conversation()
    chat.send("A watercolor fox")
    chat.send("Make it night time")
    assert contents(gemini, 1)[1] == answered_content(first)


def test_input_image_of_the_first_send_stays_in_the_history(make_client: Any, gemini: Any) -> None:
    photo = jpeg(800, 600)
    chat = make_client().conversation(rules_preamble=False)
    chat.send("Put a small red boat on this lake", input_image=photo)
    chat.send("Now make it sunset")
    chat.send("Add a lighthouse")
    expected_image_part = {"inlineData": {"mimeType": "image/jpeg", "data": b64(photo)}}
    for index in (0, 1, 2):
        first_user = contents(gemini, index)[0]
        assert first_user["parts"] == [
            {"text": "Put a small red boat on this lake"},
            expected_image_part,
        ]
    assert chat.history[0].image_data == photo
    assert chat.history[0].mime_type == "image/jpeg"


def test_preamble_only_on_the_first_user_turn_and_identical_on_replay(
    make_client: Any, gemini: Any
) -> None:
    chat = make_client().conversation(width=1280, height=720)
    chat.send("Thumbnail 'EPIC WIN'")
    chat.send("Bigger text")
    chat.send("More glow")
    opening = contents(gemini, 0)[0]["parts"][0]["text"]
    assert opening != "Thumbnail 'EPIC WIN'"
    assert opening.endswith("Thumbnail 'EPIC WIN'")
    assert "1280x720" in opening
    third = contents(gemini, 2)
    assert [content["role"] for content in third] == ["user", "model", "user", "model", "user"]
    assert third[0]["parts"][0]["text"] == opening
    assert contents(gemini, 1)[0]["parts"][0]["text"] == opening
    # Later turns carry only the size line (the same one each time), never the rules.
    (bigger,) = third[2]["parts"]
    (glow,) = third[4]["parts"]
    assert size_line_of(bigger["text"], "Bigger text") == size_line_of(glow["text"], "More glow")
    assert third[1] == answered_content(ANSWERS[0])
    assert third[3] == answered_content(ANSWERS[1])


@pytest.mark.parametrize("rules", [True, False], ids=["rules", "no-rules"])
def test_every_refinement_states_the_exact_size(make_client: Any, gemini: Any, rules: bool) -> None:
    # SPEC: the exact pixels are stated in the prompt; a refinement asks for them too.
    chat = make_client().conversation(width=1280, height=720, rules_preamble=rules)
    chat.send("Thumbnail 'EPIC WIN'")
    chat.send("Bigger text")
    chat.send("More glow")
    for index, prompt in ((1, "Bigger text"), (2, "More glow")):
        (new_turn,) = contents(gemini, index)[-1]["parts"]
        line = size_line_of(new_turn["text"], prompt)
        assert "exactly 1280x720 pixels" in line
        assert "Follow these rules" not in new_turn["text"]  # the rules go on the opening only


def test_replayed_refinements_read_as_they_were_sent(make_client: Any, gemini: Any) -> None:
    chat = make_client().conversation(width=1280, height=720)
    chat.send("Thumbnail 'EPIC WIN'")
    chat.send("Bigger text")
    chat.send("More glow")
    first, second, third = (contents(gemini, index) for index in range(3))
    assert third[0] == second[0] == first[0]  # the opening, rules and size, as sent
    assert third[2] == second[2]  # "Bigger text" with its size line, as sent
    assert third[1] == answered_content(ANSWERS[0])
    assert third[3] == answered_content(ANSWERS[1])
    # The history keeps the user's own words; the size line is added when sending.
    assert [turn.text for turn in chat.history[::2]] == [
        "Thumbnail 'EPIC WIN'",
        "Bigger text",
        "More glow",
    ]


def test_history_is_a_list_of_turns(make_client: Any, gemini: Any) -> None:
    chat = make_client().conversation(width=512, height=512)
    assert chat.history == []
    chat.send("A fox")
    chat.send("In the snow")
    history = chat.history
    assert isinstance(history, list)
    assert all(isinstance(turn, Turn) for turn in history)
    assert [turn.role for turn in history] == ["user", "model", "user", "model"]
    assert [turn.text for turn in history] == ["A fox", "Answer 1.", "In the snow", "Answer 2."]
    assert history[1].image_data == FIRST_IMAGE
    assert history[1].mime_type == "image/png"
    assert history[1].thought_signature == b"sig-image-1"
    assert history[1].parts == (
        TurnPart(text="Answer 1.", thought_signature=b"sig-text-1"),
        TurnPart(main_image=True, thought_signature=b"sig-image-1"),
    )
    assert history[3].image_data == SECOND_IMAGE
    assert history[3].thought_signature == b"sig-image-2"


def test_conversation_is_a_plain_method_of_both_clients(make_client: Any, client_kind: str) -> None:
    chat = make_client().target.conversation(width=512, height=512)
    assert not inspect.isawaitable(chat)
    assert type(chat) is (Conversation if client_kind == "sync" else AsyncConversation)
    assert (chat.width, chat.height, chat.history) == (512, 512, [])


# -- storing and resuming --------------------------------------------------------------


def test_json_round_trip_keeps_bytes_as_base64_and_never_the_key(
    make_client: Any, gemini: Any
) -> None:
    photo = webp_lossless(40, 30)
    chat = make_client().conversation(width=1280, height=720, seed=42)
    chat.send("A fox", input_image=photo)
    saved = chat.model_dump_json()

    assert API_KEY not in saved
    data = json.loads(saved)
    assert data["history"][0]["image_data"] == b64(photo)
    assert data["history"][1]["image_data"] == b64(FIRST_IMAGE)
    assert data["history"][1]["thought_signature"] == b64(b"sig-image-1")
    for cls in (Conversation, AsyncConversation):
        restored = cls.model_validate_json(saved)
        assert restored.history == chat.history
        assert (restored.width, restored.height, restored.seed) == (1280, 720, 42)
        assert restored.model_dump_json() == saved


def test_resume_from_a_saved_conversation(make_client: Any, gemini: Any) -> None:
    chat = make_client().conversation(width=1280, height=720)
    chat.send("Thumbnail 'EPIC WIN'")
    saved = chat.model_dump_json()

    # A later web request: a new client, the conversation loaded from storage.
    resumed = make_client().conversation(history=Conversation.model_validate_json(saved))
    resumed.send("Bigger text")

    first_sent, model_turn, new_turn = contents(gemini, 1)
    assert first_sent == contents(gemini, 0)[0]
    assert model_turn == answered_content(ANSWERS[0])
    (new_part,) = new_turn["parts"]
    assert "1280x720" in size_line_of(new_part["text"], "Bigger text")  # the stored size
    body = json.loads(gemini.calls[1].request.content)
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}
    assert len(resumed.history) == 4


def test_resume_from_a_list_of_turns(make_client: Any, gemini: Any) -> None:
    history = [
        Turn(role="user", text="A watercolor fox"),
        Turn(
            role="model",
            text="Here's your fox.",
            image_data=FIRST_IMAGE,
            thought_signature=b"sig-a",
            parts=(
                TurnPart(text="Here's your fox.", thought_signature=b"sig-b"),
                TurnPart(main_image=True, thought_signature=b"sig-a"),
            ),
        ),
    ]
    chat = make_client().conversation(history=history, rules_preamble=False)
    chat.send("Make it night time")
    assert contents(gemini) == [
        {"role": "user", "parts": [{"text": "A watercolor fox"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Here's your fox.", "thoughtSignature": b64(b"sig-b")},
                {
                    "inlineData": {"mimeType": "image/png", "data": b64(FIRST_IMAGE)},
                    "thoughtSignature": b64(b"sig-a"),
                },
            ],
        },
        {"role": "user", "parts": [{"text": "Make it night time"}]},
    ]
    assert chat.history[:2] == history


def test_unbound_conversation_refuses_to_send(client_kind: str, gemini: Any) -> None:
    saved = Conversation(history=[Turn(role="user", text="A fox")]).model_dump_json()
    if client_kind == "sync":
        with pytest.raises(aigen.ConfigurationError, match=r"client\.conversation"):
            Conversation.model_validate_json(saved).send("More")
    else:
        chat = AsyncConversation.model_validate_json(saved)
        with pytest.raises(aigen.ConfigurationError, match=r"client\.conversation"):
            asyncio.run(chat.send("More"))
    assert not gemini.called


def test_failed_send_leaves_the_history_unchanged(make_client: Any, gemini: Any) -> None:
    gemini.side_effect = [
        httpx.Response(200, json=ANSWERS[0]),
        httpx.Response(400, json=gb.error(400, "INVALID_ARGUMENT", "Bad request.")),
        httpx.Response(200, json=ANSWERS[1]),
    ]
    chat = make_client().conversation()
    chat.send("A fox")
    before = list(chat.history)
    with pytest.raises(aigen.BadRequestError):
        chat.send("Something the server refuses")
    assert chat.history == before

    chat.send("In the snow")
    assert roles(gemini) == ["user", "model", "user"]
    assert contents(gemini)[2]["parts"] == [{"text": "In the snow"}]
    assert [turn.text for turn in chat.history] == [
        "A fox",
        "Answer 1.",
        "In the snow",
        "Answer 2.",
    ]


# -- the seed design's conversation_history --------------------------------------------


@pytest.mark.parametrize("encoding", ["bytes", "base64", "urlsafe-base64"])
def test_seed_design_history_dicts(make_client: Any, gemini: Any, encoding: str) -> None:
    photo = jpeg(300, 200, app_segments=2)
    encoded: bytes | str = {
        "bytes": photo,
        "base64": base64.b64encode(photo).decode(),
        "urlsafe-base64": base64.urlsafe_b64encode(photo).decode().rstrip("="),
    }[encoding]
    result = make_client().generate(
        "Make it blue",
        rules_preamble=False,
        conversation_history=[
            {"role": "user", "text": "A red car", "image_data": encoded},
            {"role": "model", "text": "Here it is.", "image_data": FIRST_IMAGE},
        ],
    )
    assert result.image_data == FIRST_IMAGE
    sent = contents(gemini)
    assert [content["role"] for content in sent] == ["user", "model", "user"]
    assert sent[0]["parts"] == [
        {"text": "A red car"},
        {"inlineData": {"mimeType": "image/jpeg", "data": b64(photo)}},
    ]
    assert sent[1]["parts"] == [
        {"text": "Here it is."},
        {"inlineData": {"mimeType": "image/png", "data": b64(FIRST_IMAGE)}},
    ]
    assert sent[2]["parts"] == [{"text": "Make it blue"}]


def test_size_is_stated_even_when_the_first_user_turn_is_only_an_image(
    make_client: Any, gemini: Any
) -> None:
    # SPEC: the exact pixels asked for are stated in the prompt. A history that opens with
    # a bare image (the user uploaded a photo, then typed) must not lose them.
    make_client().generate(
        "Make it blue",
        width=1280,
        height=720,
        conversation_history=[
            {"role": "user", "image_data": jpeg(300, 200)},
            {"role": "model", "text": "A nice photo. What now?", "image_data": FIRST_IMAGE},
        ],
    )
    sent = contents(gemini)
    user_texts = [
        part.get("text", "")
        for content in sent
        if content["role"] == "user"
        for part in content["parts"]
    ]
    assert any("1280x720" in text for text in user_texts), user_texts


def test_consecutive_turns_of_one_role_are_merged(make_client: Any, gemini: Any) -> None:
    make_client().generate(
        "Third wish",
        rules_preamble=False,
        conversation_history=[
            {"role": "user", "text": "First wish"},
            {"role": "user", "text": "Second wish"},
            {"role": "model", "text": "One.", "image_data": FIRST_IMAGE},
            {"role": "model", "text": "Two.", "image_data": SECOND_IMAGE},
            {"role": "user", "text": "A note"},
        ],
    )
    sent = contents(gemini)
    assert [content["role"] for content in sent] == ["user", "model", "user"]
    assert sent[0]["parts"] == [{"text": "First wish"}, {"text": "Second wish"}]
    assert [part.get("text") for part in sent[1]["parts"]] == ["One.", None, "Two.", None]
    assert sent[2]["parts"] == [{"text": "A note"}, {"text": "Third wish"}]


# -- thought signatures for history the model did not make ------------------------------


IMPORTED = [
    {"role": "user", "text": "A watercolor fox"},
    {"role": "model", "text": "Here's your fox.", "image_data": FIRST_IMAGE},
]


def test_gemini_3_gets_the_stand_in_signature_on_imported_model_turns(
    make_client: Any, gemini: Any
) -> None:
    make_client(model="gemini-3-pro-image-preview").generate(
        "Make it night time", conversation_history=IMPORTED
    )
    sent = contents(gemini)
    text_part, image_part = sent[1]["parts"]
    assert text_part == {"text": "Here's your fox.", "thoughtSignature": STAND_IN}
    assert image_part["thoughtSignature"] == STAND_IN
    assert image_part["inlineData"]["data"] == b64(FIRST_IMAGE)
    # Only model parts are signed; user turns carry none.
    assert all("thoughtSignature" not in part for part in sent[0]["parts"] + sent[2]["parts"])


def test_gemini_3_per_request_model_gets_the_stand_in(make_client: Any, gemini: Any) -> None:
    chat = make_client().conversation(history=IMPORTED, model="gemini-3-pro-image-preview")
    chat.send("Make it night time")
    url = str(gemini.calls[0].request.url)
    assert url.endswith("/models/gemini-3-pro-image-preview:generateContent")
    assert all(part["thoughtSignature"] == STAND_IN for part in contents(gemini)[1]["parts"])


def test_gemini_3_keeps_real_signatures(make_client: Any, gemini: Any) -> None:
    history = [
        IMPORTED[0],
        {
            **IMPORTED[1],
            "thought_signature": b"real-sig",
            "parts": [
                {"text": IMPORTED[1]["text"], "thought_signature": b"real-t"},
                {"main_image": True, "thought_signature": b"real-sig"},
            ],
        },
    ]
    make_client(model="gemini-3-pro-image-preview").generate(
        "Make it night time", conversation_history=history
    )
    text_part, image_part = contents(gemini)[1]["parts"]
    assert text_part["thoughtSignature"] == b64(b"real-t")
    assert image_part["thoughtSignature"] == b64(b"real-sig")


def test_gemini_2_5_gets_no_stand_in_signature(make_client: Any, gemini: Any) -> None:
    make_client(model="gemini-2.5-flash-image").generate(
        "Make it night time", conversation_history=IMPORTED
    )
    model_turn = contents(gemini)[1]
    assert model_turn["role"] == "model"
    assert all("thoughtSignature" not in part for part in model_turn["parts"])
    assert STAND_IN not in gemini.calls[0].request.content.decode()
