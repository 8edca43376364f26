"""Meta-talk: generated text that talks about the requested message instead of being it.

A small instruction-tuned model asked for "a message ... mildly optimistic" often answers with text
about the task: it describes a message ("The message is designed to encourage..."), offers or
announces one ("I'm ready to help you craft a message", "Here's a revised version:"), or restates
the prompt ("The app provides the following context about the individual..."). In the first
SmolLM2-135M database 80% of the messages were of this kind. ``meta_talk(text)`` names the first
rule a text breaks (``None`` when it reads as a delivered message); the database builder rejects
such messages and asks again with a new seed (``tools.build_response_db``, capped tries) and
reports the rejection rate in the data card.

The rules (``META_TALK_RULES``, case-insensitive regular expressions; a delivered message speaks
to the reader, so none of these should be needed to write one):

* ``assistant``: the model speaks as an assistant about the task ("Sure,", "I'm ready to help",
  "I'll make sure to deliver", "I'd be happy to", "please provide the text").
* ``describes``: a sentence whose subject is the message, text, request or version ("The message
  is designed to...", "This message provides...", "The text is made with...").
* ``presents``: a version is announced or rewritten ("Here's the message:", "Here is a revised
  version", "rephrase", "rewording", "a modified version").
* ``echoes``: the prompt's own wording is repeated: "the app provides/collects", "the following
  context", "this context", "dominate", "the individual", "mildly", "level <n>", "on a scale",
  "lower/higher level", "<style> level".
* ``style_talk``: the text names its own tone or style ("a positive tone", "formal language").

An empty text is meta-talk too (rule ``empty``): there is no message to deliver.
"""

from __future__ import annotations

import re

__all__ = ["META_TALK_RULES", "meta_talk"]

_SUBJECT = (r"(?:the|this|that|my|our|your|a|its)\s+(?:(?:revised|modified|rewritten|rephrased|final|following|"
            r"new|above|original|simple|short|main|overall|intended|encouraging|motivational|given)\s+)?")
META_TALK_RULES: dict[str, re.Pattern] = {
    "assistant": re.compile(
        r"^\s*(?:sure|certainly|of course|absolutely|okay|ok)\b[,!. ]"
        r"|\bI(?:'m| am) (?:ready|happy|glad|here|excited|pleased) to (?:help|assist|craft|write|create)"
        r"|\bI(?:'d| would) (?:be (?:happy|glad|delighted) to|love to help)"
        r"|\bI(?:'ll| will) (?:make sure|ensure|rephrase|revise|tailor|craft|write|deliver|make the message|"
        r"create|provide)"
        r"|\bplease (?:provide|share|send|go ahead)\b"
        r"|\b(?:as an|I'm an|I am an|I'm just a) (?:AI|assistant|language model)\b"
        r"|\byour request\b",
        re.IGNORECASE),
    "describes": re.compile(
        r"\b" + _SUBJECT + r"(?:message|text|response|request|prompt|version|rewording|wording|sentence)s?\s+"
        r"(?:is|are|was|will|would|can|could|may|might|should|has|does|provides|aims|uses|includes|contains|"
        r"encourages|emphasi[sz]es|highlights|conveys|reads|focuses|maintains|offers|acknowledges|"
        r"addresses|remains|avoids|starts|ends|begins|needs|must|serves|expresses)\b",
        re.IGNORECASE),
    "presents": re.compile(
        r"\bhere(?:'s| is| are)\b[^.:!?]{0,60}\b(?:message|version|rewording|revision|text|draft|example|option)s?\b"
        r"|\b(?:revised|modified|rewritten|rephrased|updated|improved|alternative) (?:version|message|text)\b"
        r"|\brephras\w*|\breword\w*|\brevis(?:e|ed|ion)\b",
        re.IGNORECASE),
    "echoes": re.compile(
        r"\bthe app (?:provides|collects|offers the following|has provided)\b|\bthe following context\b"
        r"|\bthis context\b|\bdominate\b|\bthe individual(?:'s)?\b|\bmildly\b|\blevel \d+\b|\bon a scale\b"
        r"|\b(?:lower|higher) (?:\w+ )?level\b"
        r"|\b(?:optimism|formality|severity|clarity|encouragement|humor|urgency|threat|complexity|detail|"
        r"politeness|authoritativeness|authenticity|actionability|conciseness|emotiveness|personalization|"
        r"supportiveness|vision|female-codedness) level\b",
        re.IGNORECASE),
    "style_talk": re.compile(
        r"\b(?:a|an|the|this|its|with|in)\s+(?:\w+\s+){0,3}(?:tone|register)\b"
        r"|\b(?:formal|casual|informal|positive|plain|simple|neutral) language\b",
        re.IGNORECASE),
}


def meta_talk(text: str) -> str | None:
    """The first ``META_TALK_RULES`` rule (``"empty"`` for blank text) that ``text`` breaks, or ``None``."""
    if not str(text).strip():
        return "empty"
    for name, pattern in META_TALK_RULES.items():
        if pattern.search(str(text)):
            return name
    return None
