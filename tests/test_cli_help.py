"""Every command's ``--help`` reads as help: a usage line, a paragraph, options grouped by purpose
with word metavars, each default said once, and example invocations."""

from __future__ import annotations

import re

import pytest

from dps_lens.cli import COMMANDS, build_parser, main
from dps_lens.data import PreferenceExample, write_jsonl

RAW_REPR = re.compile(r"\b\w+(Config|Options)\(|\bPosixPath\(|<function |\['config'\]")
BAD_METAVAR = re.compile(
    r"(--[\w-]+) (parse_\w+|\[\w+\]|\w+\.\w+|bool|int|float|str|Path|Literal|\S*\|None)\b"
)


def _help(path: tuple[str, ...], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*path, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _entries(text: str) -> list[str]:
    """Each option's help entry: its invocation line and the indented lines that follow."""
    entries: list[str] = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            entries.append(line)
        elif entries and line.startswith("    "):
            entries[-1] += " " + line.strip()
    return entries


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_commands_help_is_readable(path, capsys):
    text = _help(path, capsys)
    assert text.startswith(f"usage: dps-lens {' '.join(path)}") and "[options]" in text
    options = text.split("\nexamples:\n")[0]
    assert not RAW_REPR.search(options), RAW_REPR.search(options)
    assert not BAD_METAVAR.search(options), BAD_METAVAR.search(options)
    entries = _entries(text)
    assert entries, "no options listed"
    for entry in entries:
        assert entry.count("(default") <= 1, entry
    description = text.split("\n\n")[1]
    assert description.strip() and "\n  -" not in description
    assert "examples:\n  dps-lens " in text, "no example invocation"
    for example in text.split("examples:\n")[1].splitlines():
        assert example.startswith("  dps-lens "), example


def test_options_are_grouped_by_purpose(capsys):
    text = _help(("evaluate",), capsys)
    for title in ("options:", "model:", "data:", "decoding:", "method parameters"):
        assert f"\n{title}" in text, title
    model = text.split("\nmodel:")[1].split("\n\n")[0]
    assert "--model NAME|PATH" in model and "--dtype DTYPE" in model
    assert "--batch-size N" in text and "--progress, --no-progress" in text


def test_negative_flags_parse_with_a_dash():
    parser = build_parser()
    namespace = parser.parse_args(["discover", "--model", "tiny-llama", "--no-graddrop"])
    assert namespace.config.graddrop is False
    namespace = parser.parse_args(["discover", "--model", "tiny-llama", "--graddrop"])
    assert namespace.config.graddrop is True


def test_a_repeated_warning_is_one_line_with_its_count(tmp_path, capsys):
    data = tmp_path / "users.jsonl"
    rows = [PreferenceExample(f"u{i}", "Question: suggest a pet", [], "dog") for i in range(3)]
    write_jsonl(data, rows)
    args = ["steer", "--model", "tiny-llama", "--data", str(data), "--method", "plain",
            "--max-new-tokens", "2"]  # fmt: skip
    assert main(args) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    warned = [line for line in err if "empty profile" in line]
    assert warned == [
        "warning: 3 users have an empty profile ('u0', 'u1', 'u2'): scoring them measures no "
        "preference"
    ]
    assert not any("UserWarning" in line or ".py:" in line for line in err)
