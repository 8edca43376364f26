"""The meta-talk rule (``envs.meta_talk``): examples from the first shipped SmolLM2 database, hand-labelled.

Oracle: a person's reading of each message (does it talk about the message, or is it one?) and
which wording gives it away. A property test checks the claim the batched generator's early stop
relies on: a verdict reached on a text's complete words stands for every continuation of it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structbandits.envs.meta_talk import META_TALK_RULES, meta_talk

# (message from mhealth_llm_responses.parquet or the first transformers build, the rule that flags it)
META = [
    ("I'll make sure to deliver the message with confidence and a gentle, encouraging tone.", "assistant"),
    ("I'm ready to help you craft a message. What's the text of the message?", "assistant"),
    ("I'm ready to assist. Please provide your text of the message and I'll tailor it to your requirements.",
     "assistant"),
    ("Sure, I'd be happy to help with that. Here's a modified version of the message:", "assistant"),
    ("Your request is exactly what I was looking for. I'll just rephrase the message.", "assistant"),
    ("The message is designed to encourage individuals to take more steps towards their health goals.", "describes"),
    ("This message is highly supportive and encourages the user to take more steps towards their health goals.",
     "describes"),
    ("The text is made with a minimal amount of information and does not contain any technical jargon.",
     "describes"),
    ("Here is a revised version of the message: \"Every day, the app offers users a unique opportunity.\"",
     "presents"),
    ("Here's a rewritten version of your message: \"Track your steps.\"", "presents"),
    ("Clear and concise is a high priority. Let me reword it: walk more.", "presents"),
    ("The app provides the following context about the individual: they took 0-4,999 steps the previous day.",
     "echoes"),
    ("The individual has taken 10,000-15,000 steps the previous day and is currently at another location.",
     "echoes"),
    ("You took 5,000-9,999 steps. This context may be included but does not need to dominate it.", "echoes"),
    ("Walk more today, at optimism level 7 on a scale from 0 to 10.", "echoes"),
    ("Keep going! I use a warm and friendly tone to cheer you on.", "style_talk"),
    ("", "empty"),
    ("   ", "empty"),
]

DELIVERED = [
    "Take more steps, and you'll be taking better health.",
    "You've taken a significant number of steps today, and I'm happy to support you in your health journey.",
    "Your dedication to improving your physical health is truly commendable. Remember, every small step counts.",
    "Hey there! You took over 15,000 steps yesterday. Why not take a short walk around the office today?",
    "Regularly taking a few more steps at work can significantly improve your overall health.",
    "Stay active, stay healthy: a ten-minute walk after lunch is a great place to start.",
    "Please take a short walk after lunch today; your body will thank you.",
]


@pytest.mark.parametrize("text, rule", META)
def test_meta_talk_examples_break_the_named_rule(text, rule):
    assert meta_talk(text) == rule
    if rule != "empty":
        assert META_TALK_RULES[rule].search(text)


@pytest.mark.parametrize("text", DELIVERED)
def test_delivered_messages_pass(text):
    assert meta_talk(text) is None


def test_every_rule_has_an_example():
    assert {rule for _, rule in META} == set(META_TALK_RULES) | {"empty"}


WORDS = ["you", "walk", "more", "today", "the", "message", "is", "here's", "a", "revised", "version", "I'll",
         "make", "sure", "app", "provides", "individual", "tone", "great", "steps", "level", "3", "keep", "going!",
         "this", "context", "mildly", "please", "provide", "of", "course,", "sure,", "rephrase"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=14), st.lists(st.sampled_from(WORDS), max_size=8))
def test_a_verdict_on_complete_words_stands_for_every_continuation(head, tail):
    text = " ".join(head)
    if meta_talk(text) is not None:
        assert meta_talk(text + " " + " ".join(tail)) is not None
