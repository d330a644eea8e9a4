"""*Profile lift*: how much of an output comes from the user's profile and not from the input.

An output's content words are its lower-cased words (``\\w+``) that are not English stop words
(scikit-learn's list). Its lift is the share of them that occur in the profile's content words
but not in the input's: ``|{w ∈ out : w ∈ profile, w ∉ input}| / |out|`` (counted with
repetition; undefined, NaN, for an output with no content word). A method that personalizes
moves an output's lift toward the gold outputs' rate; one that only degrades the text does not.
"""

from __future__ import annotations

import functools
import math
import re

from dps_lens.data.example import PreferenceExample

_WORD = re.compile(r"\w+")


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def content_words(text: str) -> list[str]:
    """The lower-cased words of ``text`` that are not stop words, in order."""
    stop = _stop_words()
    return [w for w in _WORD.findall(text.lower()) if w not in stop]


def profile_lift(output: str, example: PreferenceExample) -> float:
    """The share of ``output``'s content words found in ``example``'s profile but not its input."""
    words = content_words(output)
    if not words:
        return math.nan
    from_profile = set(content_words(" ".join(example.profile))) - set(content_words(example.input))
    return sum(word in from_profile for word in words) / len(words)
