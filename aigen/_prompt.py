"""The text aigen wraps around a user's prompt: the rules preamble and the size line."""

from __future__ import annotations

__all__ = ["compose_prompt"]

_RULES = (
    "Follow these rules strictly:\n"
    "- Create exactly one image.\n"
    "{size_rule}"
    "- Render any text in quotation marks exactly as written, spelled correctly.\n"
    "- Add no watermark, signature, border or caption that was not asked for.\n"
    "\n"
    "Image request: {prompt}"
)


def compose_prompt(prompt: str, *, width: int | None, height: int | None, rules: bool) -> str:
    """The prompt as sent: with the rules preamble when `rules`, and the exact size stated.

    Image models take an aspect ratio, not pixels, so the pixels the user asked for are
    written into the prompt too, whether or not the rules are on. A conversation's later
    turns pass `rules=False`: the rules open it once, the size line goes on every turn.
    """
    has_size = width is not None and height is not None
    if rules:
        size_rule = f"- Make it exactly {width}x{height} pixels.\n" if has_size else ""
        return _RULES.format(size_rule=size_rule, prompt=prompt)
    if has_size:
        return f"{prompt}\n\nImage size: exactly {width}x{height} pixels."
    return prompt
