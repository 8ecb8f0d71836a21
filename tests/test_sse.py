"""The server-sent-events parser (aigen/_sse.py): as the bytes arrive, whatever the chunks.

A stream fed in any split gives the events it gives fed whole, each event as soon as its
blank line has arrived; the framing rules are checked one by one, and a reference reading
of the standard (whole text, line by line) judges random streams.
"""

from __future__ import annotations

import base64
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aigen._sse import EventParser, ServerSentEvent

from .test_properties import PROFILE


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = EventParser()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def test_an_event_is_handed_over_as_soon_as_its_blank_line_arrives() -> None:
    parser = EventParser()
    assert parser.feed(b'data: {"a": 1}\n') == []
    assert parser.feed(b"\n") == [ServerSentEvent('{"a": 1}')]
    assert parser.feed(b"data: two\n\n") == [ServerSentEvent("two")]


def test_the_framing_rules() -> None:
    stream = (
        b"\xef\xbb\xbf: a comment, a keep-alive\n"
        b"event: image_generation.partial_image\n"
        b"id: 7\n"
        b"retry: 1500\n"
        b"data:first\n"
        b"data:  second, one space dropped\n"
        b"\n"
        b"event: ignored, since no data follows\n"
        b"\n"
        b"data\n"
        b"\n"
        b"unknown: field\n"
        b"data: last\r\n\r\n"
    )
    assert parse(stream) == [
        ServerSentEvent(
            "first\n second, one space dropped",
            event="image_generation.partial_image",
            id="7",
            retry=1500,
        ),
        ServerSentEvent("", id="7", retry=1500),
        ServerSentEvent("last", id="7", retry=1500),
    ]


def test_each_line_ending_and_a_cr_split_from_its_lf() -> None:
    assert parse(b"data: a\r\rdata: b\n\ndata: c\r\n\r\n") == [
        ServerSentEvent("a"),
        ServerSentEvent("b"),
        ServerSentEvent("c"),
    ]
    # "\r" ends a chunk: the parser waits to see whether "\n" follows.
    assert parse(b"data: a\r", b"\n", b"\r", b"\n") == [ServerSentEvent("a")]


def test_an_unfinished_event_at_the_end_is_dropped() -> None:
    parser = EventParser()
    assert parser.feed(b"data: never finished\n") == []
    assert parser.close() == []


def test_a_last_cr_ends_its_line_when_the_stream_ends() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r\r") == []  # a "\n" may still follow
    assert parser.close() == [ServerSentEvent("a")]


def test_a_whole_image_in_one_line_in_many_chunks() -> None:
    """Gemini's streamed image: one data line of megabytes, read 64 KiB at a time."""
    image = bytes(range(256)) * 12_000  # 3 MB
    line = b'data: {"inlineData": {"data": "' + base64.b64encode(image) + b'"}}\r\n\r\n'
    chunks = [line[i : i + 65_536] for i in range(0, len(line), 65_536)]
    parser = EventParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    assert len(events) == 1
    encoded = re.search(r'"data": "([^"]+)"', events[0].data)
    assert encoded is not None
    assert base64.b64decode(encoded.group(1)) == image


def reference(stream: bytes) -> list[ServerSentEvent]:
    """The standard's algorithm, on the whole text at once."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    lines = lines[:-1]  # what follows the last line break is not a line yet
    events, data, event_type, last_id, retry = [], [], "", None, None
    for line in lines:
        if not line:
            if data:
                events.append(
                    ServerSentEvent("\n".join(data), event_type or "message", last_id, retry)
                )
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        value = value[1:] if colon and value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events


LINES = st.lists(
    st.one_of(
        st.sampled_from(["", ":ping", "data", "event: x", "id: 3", "retry: 10", "retry: x"]),
        st.builds(lambda v: f"data: {v}", st.text(alphabet="ab é{}\0", max_size=8)),
        st.builds(lambda v: f"data:{v}", st.text(alphabet="ab ", max_size=4)),
    ),
    max_size=30,
)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


@settings(PROFILE)
@given(lines=LINES, ending=ENDINGS, cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_split_gives_what_the_standard_gives(
    lines: list[str], ending: str, cuts: list[int]
) -> None:
    stream = ending.join([*lines, ""]).encode()
    # A lone "\r" ending before a "\n"-starting line would read as "\r\n": keep them apart.
    if ending == "\r":
        stream = stream.replace(b"\r\n", b"\r")
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert parse(*chunks) == reference(stream)
