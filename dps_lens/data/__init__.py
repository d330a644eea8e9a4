"""Examples, prompt templates, tokenization with target masks, loaders and user-disjoint splits."""

from dps_lens.data.encoding import EncodedExample, Encoder, TargetBatch, collate, encoder_for
from dps_lens.data.example import ExampleRef, PreferenceExample, data_hash, user_ids
from dps_lens.data.loaders import (
    load_examples,
    load_jsonl,
    load_lamp,
    load_lamp_dps,
    load_personachat,
    write_jsonl,
)
from dps_lens.data.prompts import PromptTemplate, get_template
from dps_lens.data.splits import discovery_examples, sample_examples, split_by_user

__all__ = [
    "EncodedExample",
    "Encoder",
    "ExampleRef",
    "PreferenceExample",
    "PromptTemplate",
    "TargetBatch",
    "collate",
    "data_hash",
    "discovery_examples",
    "encoder_for",
    "get_template",
    "load_examples",
    "load_jsonl",
    "load_lamp",
    "load_lamp_dps",
    "load_personachat",
    "sample_examples",
    "split_by_user",
    "user_ids",
    "write_jsonl",
]
