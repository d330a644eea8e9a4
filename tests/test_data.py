import json
from dataclasses import replace

import pytest

from dps_lens.data import (
    PreferenceExample,
    collate,
    data_hash,
    encoder_for,
    get_template,
    load_examples,
    load_lamp,
    sample_examples,
    split_by_user,
    user_ids,
)
from dps_lens.data.encoding import Encoder
from dps_lens.errors import DataFormatError, DpsLensError

from .conftest import LAMP4, LAMP7, PERSONACHAT, needs_shared

EXAMPLE = PreferenceExample("u1", "Which food?", ["I like tea.", "Pizza is great."], "Pizza!")


def test_history_template_is_the_authors_format():
    text = get_template("history").render(EXAMPLE.input, EXAMPLE.profile)
    assert text == "History 1: I like tea.\nHistory 2: Pizza is great.\nWhich food?\n"
    assert get_template("no-profile").render(EXAMPLE.input, EXAMPLE.profile) == "Which food?\n"


def test_chat_template_needs_a_chat_tokenizer(tiny_gpt2):
    with pytest.raises(DpsLensError, match="chat template"):
        get_template("chat").render("x", [], tiny_gpt2.tokenizer)


def test_target_tokens_are_marked_exactly(tiny_gpt2):
    encoder = encoder_for(tiny_gpt2, get_template("history"))
    encoded = encoder.encode(EXAMPLE)
    tokenizer = tiny_gpt2.tokenizer
    assert tokenizer.decode(encoded.input_ids[encoded.target_start :]) == "Pizza!"
    assert encoded.input_ids[0] == tokenizer.bos_token_id
    batch = collate([encoded, encoder.encode(EXAMPLE.without_profile())], pad_id=0)
    for row in range(2):
        marked = batch.tokens[row][batch.target_mask[row]].tolist()
        assert tokenizer.decode(marked) == "Pizza!"
    assert batch.label_mask.shape[1] == batch.tokens.shape[1] - 1


def test_long_prompts_drop_the_oldest_profile_items_first(tiny_gpt2):
    full = encoder_for(tiny_gpt2, get_template("history")).encode(EXAMPLE)
    limit = len(full.input_ids) - 5  # too short for the first item, long enough without it
    encoded = Encoder(tiny_gpt2.tokenizer, get_template("history"), max_length=limit).encode(
        EXAMPLE
    )
    assert encoded.n_profile_items == 1
    prompt = tiny_gpt2.tokenizer.decode(encoded.input_ids[1 : encoded.target_start])
    assert "Pizza is great." in prompt and "tea" not in prompt


def test_input_and_target_longer_than_context_is_a_clear_error(tiny_gpt2):
    with pytest.raises(DpsLensError, match="input \\+ target alone take"):
        Encoder(tiny_gpt2.tokenizer, get_template("history"), max_length=8).encode(EXAMPLE)


def test_max_length_beyond_context_is_refused(tiny_gpt2):
    with pytest.raises(DpsLensError, match="exceeds the model's context"):
        encoder_for(tiny_gpt2, get_template("history"), max_length=10**6)


def test_empty_profile_is_allowed_with_a_warning(tiny_gpt2):
    encoder = encoder_for(tiny_gpt2, get_template("history"))
    with pytest.warns(UserWarning, match="empty profile"):
        encoded = encoder.encode(EXAMPLE.without_profile())
    assert encoded.n_profile_items == 0


def test_generic_jsonl_round_trip_and_hash(examples_jsonl, examples):
    loaded = load_examples(examples_jsonl)
    assert loaded == examples
    assert data_hash(loaded) == data_hash(examples)
    assert data_hash(loaded[:-1]) != data_hash(examples)


def test_malformed_jsonl_reports_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(EXAMPLE.to_dict()) + "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        load_examples(path, "jsonl")
    path.write_text(json.dumps({"user_id": "u", "input": "x"}) + "\n")
    with pytest.raises(DataFormatError, match="missing field\\(s\\) target"):
        load_examples(path, "jsonl")


def test_official_lamp_files(tmp_path):
    questions = tmp_path / "dev_questions.json"
    questions.write_text(
        json.dumps(
            [
                {
                    "id": "310",
                    "input": "Generate a headline for: A",
                    "profile": [{"id": "3100", "text": "body", "title": "Old headline"}],
                },
            ]
        )
    )
    (tmp_path / "dev_outputs.json").write_text(
        json.dumps({"task": "LaMP_4", "golds": [{"id": "310", "output": "Gold headline"}]})
    )
    [example] = load_lamp(questions)
    assert example.target == "Gold headline"
    assert example.profile == ['"Old headline" is the title for "body"']
    assert load_examples(questions) == [example]


def test_personachat_text(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text(
        "1 your persona: i love dogs.\n2 hi there\thello , i walk my dogs .\n"
        "3 nice !\tthey are great .\n1 your persona: i am a chef.\n2 hey\ti cook .\n"
    )
    examples = load_examples(path)
    assert [e.user_id for e in examples] == ["personachat/0"] * 2 + ["personachat/1"]
    assert examples[1].profile == ["i love dogs."]
    assert examples[1].input.splitlines() == [
        "Partner: hi there",
        "You: hello , i walk my dogs .",
        "Partner: nice !",
        "You:",
    ]
    assert examples[1].target == "they are great ."


def test_user_disjoint_split_and_sampling(examples):
    discovery, evaluation = split_by_user(examples, 0.5, seed=3)
    assert set(user_ids(discovery)).isdisjoint(user_ids(evaluation))
    assert len(discovery) + len(evaluation) == len(examples)
    assert sample_examples(examples, 3, seed=1) == sample_examples(examples, 3, seed=1)
    with pytest.raises(DpsLensError, match="larger than the 6 examples"):
        sample_examples(examples, 7)


@needs_shared(LAMP7)
@needs_shared(LAMP4)
@needs_shared(PERSONACHAT)
def test_shared_datasets_load():
    lamp7, lamp4 = load_examples(LAMP7), load_examples(LAMP4)
    assert len(lamp7) == len(lamp4) == 300
    assert lamp7[0].meta["question_id"] == "610" and lamp4[5].meta["question_id"] == "315"
    assert all(len(e.profile) == 5 for e in lamp7)
    chat = load_examples(PERSONACHAT)
    assert len(user_ids(chat)) == 500 and len(chat) == 3907


def test_write_jsonl_round_trips(tmp_path):
    from dps_lens.data import load_jsonl, write_jsonl

    examples = [EXAMPLE, EXAMPLE.without_profile()]
    path = write_jsonl(tmp_path / "out.jsonl", examples)
    assert load_jsonl(path) == examples


GOOD = {"user_id": "u", "input": "x", "profile": ["p"], "target": "y"}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"target": None}, r"bad\.jsonl:2: 'target' must be a string, got null"),
        ({"input": None}, r"bad\.jsonl:2: 'input' must be a string, got null"),
        ({"user_id": None}, r"bad\.jsonl:2: 'user_id' must be a string, got null"),
        ({"target": ["y"]}, r"bad\.jsonl:2: 'target' must be a string, got list"),
        ({"profile": ["p", None]}, r"bad\.jsonl:2: 'profile\[1\]' must be a string, got null"),
        ({"profile": "p"}, r"bad\.jsonl:2: 'profile' must be a list"),
        ({"meta": "m"}, r"bad\.jsonl:2: 'meta' must be a JSON object, got str"),
        ({"meta": [1]}, r"bad\.jsonl:2: 'meta' must be a JSON object, got list"),
    ],
)
def test_null_or_mistyped_jsonl_fields_are_refused_with_the_line(tmp_path, change, error):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, **change}) + "\n")
    with pytest.raises(DataFormatError, match=error):
        load_examples(path, "jsonl")


def test_numbers_are_read_as_text(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text(json.dumps({**GOOD, "user_id": 7, "target": 3}) + "\n")
    [example] = load_examples(path)
    assert (example.user_id, example.target) == ("7", "3")


def test_null_fields_of_the_authors_jsonl_are_refused(tmp_path):
    path = tmp_path / "LaMP-7.dev.jsonl"
    row = {"source": "s", "target": "t", "icr_profile": [{"text": "a"}], "purple_profile": []}
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "target": None}) + "\n")
    with pytest.raises(DataFormatError, match=r"LaMP-7\.dev\.jsonl:2: 'target' .* got null"):
        load_examples(path)
    path.write_text(json.dumps({**row, "icr_profile": [{"text": "a"}, None]}) + "\n")
    with pytest.raises(DataFormatError, match=r"jsonl:1: icr_profile\[1\]: a profile item"):
        load_examples(path)
    path.write_text(json.dumps({**row, "icr_profile": [{"text": None}]}) + "\n")
    with pytest.raises(DataFormatError, match=r"jsonl:1: icr_profile\[0\]: 'text' .* null"):
        load_examples(path)


def test_null_fields_of_official_lamp_are_refused(tmp_path):
    questions = tmp_path / "dev_questions.json"
    outputs = tmp_path / "dev_outputs.json"
    question = {"id": "1", "input": "in", "profile": [{"text": "t"}]}
    outputs.write_text(json.dumps({"golds": [{"id": "1", "output": None}]}))
    questions.write_text(json.dumps([question]))
    with pytest.raises(DataFormatError, match=r"dev_outputs\.json: gold #0: 'output' .* null"):
        load_lamp(questions)
    outputs.write_text(json.dumps({"golds": [{"id": "1", "output": "gold"}]}))
    questions.write_text(json.dumps([{**question, "input": None}]))
    with pytest.raises(DataFormatError, match=r"question #0: 'input' .* null"):
        load_lamp(questions)
    questions.write_text(json.dumps([{**question, "profile": [None]}]))
    with pytest.raises(DataFormatError, match=r"question #0: profile\[0\]: a profile item"):
        load_lamp(questions)


@pytest.mark.parametrize(("name", "fmt"), [("x.jsonl", "jsonl"), ("x.txt", "personachat")])
def test_non_utf8_data_names_the_line(tmp_path, name, fmt):
    path = tmp_path / name
    good = json.dumps(GOOD) if fmt == "jsonl" else "1 your persona: i like tea."
    path.write_bytes(good.encode() + b"\n" + good.encode().replace(b"i", b"\xe9") + b"\n")
    with pytest.raises(DataFormatError, match=rf"{name}:2: not UTF-8 text .*convert the file"):
        load_examples(path)
    with pytest.raises(DataFormatError, match=rf"{name}:2: not UTF-8"):
        load_examples(path, fmt)


def test_non_utf8_lamp_json_names_the_line(tmp_path):
    questions = tmp_path / "dev_questions.json"
    questions.write_bytes(b'[\n{"id": "1",\n "input": "caf\xe9", "profile": []}]')
    (tmp_path / "dev_outputs.json").write_text(json.dumps({"golds": []}))
    with pytest.raises(DataFormatError, match=r"dev_questions\.json:3: not UTF-8"):
        load_examples(questions)


def test_a_directory_is_not_a_data_file(tmp_path):
    from dps_lens.data import load_jsonl, load_personachat

    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    for load in (load_examples, load_jsonl, load_personachat, load_lamp):
        with pytest.raises(DpsLensError, match=r"data\.jsonl is a directory; pass a data file"):
            load(folder)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _encoder(model, name: str) -> Encoder:
    import copy

    encoder = encoder_for(model, get_template(name))
    if name != "chat":
        return encoder
    tokenizer = copy.deepcopy(model.tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return Encoder(tokenizer, encoder.template, encoder.max_length, encoder.prepend_bos)


@pytest.mark.parametrize("name", ["history", "chat", "no-profile"])
@pytest.mark.parametrize("truncated", [False, True])
def test_the_profile_span_spells_exactly_the_kept_history_lines(tiny_llama, name, truncated):
    example = PreferenceExample(
        "u", "Which food would I like?", ["I like tea.", "Pizza is great.", "Owls at night."],
        "Pizza!",
    )  # fmt: skip
    encoder = _encoder(tiny_llama, name)
    encoded = encoder.encode(example)
    if truncated and name != "no-profile":  # one token short of the whole profile
        encoder = replace(encoder, max_length=len(encoded.input_ids) - 1)
        encoded = encoder.encode(example)
    start, end = encoded.span()
    kept = example.profile[len(example.profile) - encoded.n_profile_items :]
    if name == "no-profile":
        assert (start, end) == (0, 0) and not any(encoded.profile_mask())
        return
    if truncated:  # the span follows the items truncation kept
        assert encoded.n_profile_items == len(example.profile) - 1
    spelled = encoder.tokenizer.decode(encoded.input_ids[start:end])
    lines = "\n".join(f"History {i}: {item}" for i, item in enumerate(kept, 1))
    assert "".join(spelled.split()) == "".join(lines.split())
    assert end <= encoded.target_start  # the target and the input are outside the span
    assert example.input.split()[0] not in encoder.tokenizer.decode(encoded.input_ids[start:end])
    assert encoded.profile_mask() == [start <= i < end for i in range(len(encoded.input_ids))]


def test_a_tokenizer_without_offsets_leaves_the_span_unknown(tiny_llama, monkeypatch):
    encoder = encoder_for(tiny_llama, get_template("history"))
    monkeypatch.setattr(type(tiny_llama.tokenizer), "is_fast", property(lambda self: False))
    encoded = encoder.encode(EXAMPLE)
    assert encoded.profile_span is None
    with pytest.raises(DpsLensError, match="fast"):
        encoded.span()
