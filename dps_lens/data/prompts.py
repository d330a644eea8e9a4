"""Prompt templates: turn ``(x, u)`` into the text the model reads before the target.

* ``history`` (default): the authors' format, one ``History i: <item>`` line per profile item,
  then the input;
* ``chat``: the same text as one user turn of the tokenizer's chat template (instruct models);
* ``no-profile``: the history format with the profile left out (CAD, activation patching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dps_lens.errors import DpsLensError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TEMPLATE_NAMES = ("history", "chat", "no-profile")


@dataclass(frozen=True)
class PromptTemplate:
    """How profile items and the input become a prompt.

    ``use_chat_template`` wraps the text as a user turn with the tokenizer's chat template;
    ``include_profile=False`` is the no-profile variant of the same template.
    """

    name: str = "history"
    use_chat_template: bool = False
    include_profile: bool = True
    item_format: str = "History {i}: {item}"
    answer_prefix: str = "\n"

    def history(self, profile: Sequence[str]) -> str:
        """The profile lines, ``History 1: …`` to ``History n: …`` (empty without a profile)."""
        items = profile if self.include_profile else ()
        return "\n".join(self.item_format.format(i=i, item=item) for i, item in enumerate(items, 1))

    def body(self, input_text: str, profile: Sequence[str]) -> str:
        history = self.history(profile)
        return f"{history}\n{input_text}" if history else input_text

    def render(
        self,
        input_text: str,
        profile: Sequence[str],
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> str:
        """The prompt string; the target is appended to it token-wise by ``encode_example``."""
        text = self.body(input_text, profile)
        if not self.use_chat_template:
            return text + self.answer_prefix
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise DpsLensError(
                f"template {self.name!r} needs a tokenizer with a chat template; "
                "use --template history for base models"
            )
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        if not isinstance(rendered, str):
            raise DpsLensError(f"the chat template rendered a {type(rendered).__name__}, not text")
        return rendered

    def without_profile(self) -> PromptTemplate:
        return PromptTemplate(
            name=f"{self.name}/no-profile",
            use_chat_template=self.use_chat_template,
            include_profile=False,
            item_format=self.item_format,
            answer_prefix=self.answer_prefix,
        )


def get_template(name: str) -> PromptTemplate:
    """The named template (``history``, ``chat`` or ``no-profile``)."""
    if name == "history":
        return PromptTemplate()
    if name == "chat":
        return PromptTemplate(name="chat", use_chat_template=True)
    if name == "no-profile":
        return PromptTemplate().without_profile()
    raise DpsLensError(f"unknown prompt template {name!r}; use one of {', '.join(TEMPLATE_NAMES)}")
