"""The prompts of the mHealth response database: the seed's system prompt and template, 40 style prompts.

The GAMBITTS authors (appendix F.1) asked the generator for a walking-encouragement message in a user
context (previous-day steps, current location) with one style dimension "mildly" high or low: 20
style dimensions x {high, low} = 40 prompts. Appendix F.3.1 trained the style scorers on messages
requested at a grade 0..10 along one dimension (there: eleven numbered messages per answer; here one
message per answer, which a 135M-parameter model follows far better).

The system prompt and the response template follow the seed's published wording; the seed
publishes one dimension description (optimism), the other 19 are written here in the same form.
Prompt numbers follow ``STYLES`` order, "high" before "low" (prompt 2j+1 = style j high), the same
numbering as the synthetic database (``mhealth_styles.json``).
"""

from __future__ import annotations

from typing import NamedTuple

from structbandits.data.mhealth import LOCATIONS, STEP_BINS, STYLES
from structbandits.errors import ValidationError

__all__ = [
    "GRADED_SYSTEM_PROMPT",
    "PROMPTS",
    "STYLE_WORDS",
    "SYSTEM_PROMPT",
    "PromptSpec",
    "graded_prompt",
    "render_prompt",
    "response_prompt",
]

SYSTEM_PROMPT = (
    "You are tasked with writing a single message to an individual. The message should be two to three "
    "sentences long and will be delivered to the individual through a mobile app. The intent of the message "
    "is to encourage the individual to take more steps, with the ultimate goal of improving their physical "
    "health. The app collects the following information on its users: whether they took 0-4,999, "
    "5,000-9,999, 10,000-15,000, or more than 15,000 steps the previous day, and whether they are currently "
    "at home, at work, or at another location."
)
GRADED_SYSTEM_PROMPT = SYSTEM_PROMPT  # one message per answer, so the same instruction applies

_STEPS_TEXT = {1: "0-4,999", 2: "5,000-9,999", 3: "10,000-15,000", 4: "more than 15,000"}
_LOCATION_TEXT = {"home": "home", "work": "work", "other": "another location"}
_CONTEXT = ("The app provides the following context about the individual: they took {steps} steps the "
            "previous day and are currently at {location}. This context may be included in the message but "
            "does not need to dominate it.")
_ENDING = "Please do not include anything in your response other than the text of the message."

# style -> (noun used in the grade prompt, "high" adjective, "low" adjective, what low and high look like)
STYLE_WORDS: dict[str, tuple[str, str, str, str]] = {
    "actionability": ("actionability", "actionable", "vague", "how concrete and doable the suggested action is. A lower level gives only a general idea, while a higher level names a specific step to take right now"),
    "authenticity": ("authenticity", "sincere", "generic", "how genuine and personal the voice feels. A lower level reads like boilerplate, while a higher level sounds like a real person who means it"),
    "authoritativeness": ("authoritativeness", "authoritative", "tentative", "how much the message speaks with expert confidence. A lower level hedges and suggests, while a higher level states facts and recommendations firmly"),
    "clarity": ("clarity", "clear", "unclear", "how easy the message is to understand. A lower level is muddled or indirect, while a higher level is plain and unambiguous"),
    "complexity": ("complexity", "complex", "simple", "how elaborate the wording and ideas are. A lower level uses short plain words, while a higher level uses long sentences and sophisticated vocabulary"),
    "conciseness": ("conciseness", "concise", "wordy", "how brief and to the point the message is. A lower level rambles, while a higher level uses as few words as possible"),
    "detail": ("detail", "detailed", "sparse", "how much specific information the message gives. A lower level stays general, while a higher level adds numbers, places and particulars"),
    "emotiveness": ("emotiveness", "emotional", "neutral", "how much feeling the message expresses. A lower level is flat and factual, while a higher level is full of emotion"),
    "encouragement": ("encouragement", "encouraging", "discouraging", "the degree of support and motivation in the message. A lower level may sound indifferent or dismissive, while a higher level cheers the reader on"),
    "female_codedness": ("female-codedness", "feminine-coded", "masculine-coded", "how much the wording follows stereotypically feminine rather than masculine language. A lower level sounds blunt and competitive, while a higher level sounds warm and communal"),
    "formality": ("formality", "formal", "casual", "how formal the register is. A lower level is chatty and colloquial, while a higher level is polite, professional and correct"),
    "humor": ("humor", "humorous", "serious", "how funny or playful the message is. A lower level is entirely serious, while a higher level jokes or uses wordplay"),
    "optimism": ("optimism", "optimistic", "pessimistic", "the degree of hopeful or confident language in the message. A lower optimism level may include a more matter-of-fact or pessimistic tone, while a higher optimism level may include uplifting and buoyant language"),
    "personalization": ("personalization", "personalized", "impersonal", "how much the message is tailored to this individual. A lower level could be sent to anyone, while a higher level speaks directly to the reader's situation"),
    "politeness": ("politeness", "polite", "rude", "how courteous the message is. A lower level is curt or demanding, while a higher level says please and thank you"),
    "severity": ("severity", "severe", "lenient", "how stern and grave the message is. A lower level is relaxed and forgiving, while a higher level stresses serious consequences"),
    "supportiveness": ("supportiveness", "supportive", "unsupportive", "how much the message offers understanding and help. A lower level leaves the reader on their own, while a higher level shows empathy and backing"),
    "threat": ("threat level", "threatening", "reassuring", "how much the message warns of danger or harm. A lower level is calm and safe, while a higher level warns about risks of inactivity"),
    "urgency": ("urgency", "urgent", "unhurried", "how pressing the message makes the action feel. A lower level says there is no rush, while a higher level asks for action immediately"),
    "vision": ("vision", "visionary", "short-sighted", "how much the message points to long-term goals. A lower level is about today only, while a higher level paints a picture of the future"),
}


class PromptSpec(NamedTuple):
    """A database prompt: ``prompt`` (1-based number), ``prompt_id`` ("<style>-<polarity>"), ``style``, ``polarity``."""

    prompt: int
    prompt_id: str
    style: str
    polarity: str


PROMPTS: tuple[PromptSpec, ...] = tuple(
    PromptSpec(2 * j + i + 1, f"{style}-{polarity}", style, polarity)
    for j, style in enumerate(STYLES) for i, polarity in enumerate(("high", "low"))
)


def _context_text(curr_loc: str, prev_steps: int) -> str:
    if curr_loc not in LOCATIONS:
        raise ValidationError(f"curr_loc: expected one of {list(LOCATIONS)}, got {curr_loc!r}")
    if prev_steps not in STEP_BINS:
        raise ValidationError(f"prev_steps: expected one of {list(STEP_BINS)}, got {prev_steps!r}")
    return _CONTEXT.format(steps=_STEPS_TEXT[prev_steps], location=_LOCATION_TEXT[curr_loc])


def _style(style: str) -> tuple[str, str, str, str]:
    if style not in STYLE_WORDS:
        raise ValidationError(f"style: expected one of {list(STYLES)}, got {style!r}")
    return STYLE_WORDS[style]


def response_prompt(style: str, polarity: str, curr_loc: str, prev_steps: int) -> str:
    """The seed's response-database user prompt: context, "Please make the message mildly <adjective>.", description."""
    noun, high, low, description = _style(style)
    if polarity not in ("high", "low"):
        raise ValidationError(f"polarity: expected 'high' or 'low', got {polarity!r}")
    adjective = high if polarity == "high" else low
    return (f"{_context_text(curr_loc, prev_steps)} Please make the message mildly {adjective}. "
            f"Here, {noun} is defined as {description}. {_ENDING}")


def render_prompt(prompt_id: str, curr_loc: str, prev_steps: int) -> str:
    """The user prompt of ``prompt_id`` in a context: "<style>-high" / "<style>-low" (``response_prompt``)
    or "<style>-grade<g>" with g in 0..10 (``graded_prompt``)."""
    style, _, level = str(prompt_id).rpartition("-")
    if level in ("high", "low"):
        return response_prompt(style, level, curr_loc, prev_steps)
    if level.startswith("grade") and level[5:].isdigit():
        return graded_prompt(style, int(level[5:]), curr_loc, prev_steps)
    raise ValidationError(f"prompt: expected '<style>-high', '<style>-low' or '<style>-grade<0..10>', got {prompt_id!r}")


def graded_prompt(style: str, grade: int, curr_loc: str, prev_steps: int) -> str:
    """The scorer-training user prompt: one message at ``grade`` (0..10) of ``style``, in the given context."""
    noun, high, low, description = _style(style)
    if not isinstance(grade, int) or not 0 <= grade <= 10:
        raise ValidationError(f"grade: expected an integer 0..10, got {grade!r}")
    return (f"{_context_text(curr_loc, prev_steps)} Write the message at {noun} level {grade} on a scale from 0 "
            f"(least {noun}: {low}) to 10 (most {noun}: {high}), with no intentional variation in other "
            f"qualities. Here, {noun} is defined as {description}. {_ENDING}")
