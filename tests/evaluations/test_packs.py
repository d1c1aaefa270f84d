"""Evaluation packs: the format, validation messages a person can act on, and content hashing."""

from __future__ import annotations

import hashlib
import json

import pytest

from evaluations.library import (CUSTOM_PACK_TYPES, PackValidationError, builtin_pack_paths,
                                 evals_for_pack_type, get_eval, load_builtin_pack, load_pack)

HEADER = """---
name: lab-qa
version: 2
type: multiple_choice
description: The lab's own questions.
licence: CC-BY-4.0
---
"""


def pack(*items: dict | str, header: str = HEADER) -> bytes:
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    return (header + "\n".join(lines) + "\n").encode()


GOOD_ITEM = {"question": "What is two plus two?", "choices": ["four", "five"], "answer": 0}


def errors_of(data: bytes) -> list[str]:
    with pytest.raises(PackValidationError) as caught:
        load_pack(data)
    return caught.value.errors


def test_a_valid_pack_loads_with_its_header_items_and_hash():
    data = pack(GOOD_ITEM, {"id": "q2", "question": "Pick the true ones.",
                            "choices": ["a", "b", "c"], "labels": [1, 1, 0]})
    loaded = load_pack(data)
    assert (loaded.name, loaded.version, loaded.type) == ("lab-qa", 2, "multiple_choice")
    assert loaded.licence == "CC-BY-4.0"
    assert [item["id"] for item in loaded.items] == ["1", "q2"]
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()


def test_the_hash_changes_with_any_byte_even_when_the_header_does_not():
    assert load_pack(pack(GOOD_ITEM)).sha256 != load_pack(pack(GOOD_ITEM, "")).sha256


def test_a_pack_loads_from_a_path_as_from_bytes(tmp_path):
    path = tmp_path / "lab-qa.jsonl"
    path.write_bytes(pack(GOOD_ITEM))
    assert load_pack(path).sha256 == load_pack(pack(GOOD_ITEM)).sha256


def test_an_error_names_the_line_and_the_field():
    bad = {"question": "Q?", "choices": ["only one"], "answer": 0}
    assert errors_of(pack(GOOD_ITEM, bad)) == [
        "line 9: field `choices` must be a list of at least 2 strings"]


def test_every_problem_is_reported_in_one_pass():
    errors = errors_of(pack({"choices": ["a", "b"], "answer": 5}, "{not json", [1, 2],
                            {"id": "1", "question": "Q", "choices": ["a", "b"], "answer": 1}))
    assert errors == [
        "line 8: field `question` is required",
        "line 8: field `answer` must be an integer from 0 to 1",
        "line 9: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 10: each item must be a JSON object",
        "line 11: field `id` repeats `1` from line 8",
    ]


def test_blank_lines_are_skipped_but_still_counted():
    assert errors_of(pack(GOOD_ITEM, "", {"question": "Q"}))[0].startswith("line 10:")


def test_labels_must_mark_a_true_and_a_false_choice():
    item = {"question": "Q", "choices": ["a", "b"], "labels": [1, 1]}
    assert errors_of(pack(item)) == [
        "line 8: field `labels` must mark at least one true and one false choice"]


def test_answer_and_labels_are_mutually_exclusive():
    item = {"question": "Q", "choices": ["a", "b"], "answer": 0, "labels": [1, 0]}
    assert "exactly one of `answer`" in errors_of(pack(item))[0]


def test_header_errors_name_the_header_line():
    header = HEADER.replace("version: 2", "version: two").replace("type: multiple_choice",
                                                                  "type: essays")
    errors = errors_of(pack(GOOD_ITEM, header=header))
    assert "line 3: field `version` must be a positive integer" in errors
    assert any(e.startswith("line 4: field `type` must be one of") for e in errors)


def test_an_unknown_header_field_is_an_error_not_silently_ignored():
    header = HEADER.replace("licence:", "lisence: x\nlicence:")
    assert "line 6: unknown header field `lisence`" in errors_of(pack(GOOD_ITEM, header=header))


def test_a_pack_must_start_with_its_yaml_header():
    assert errors_of(json.dumps(GOOD_ITEM).encode()) == [
        "line 1: a pack starts with a `---` line, then its YAML header"]


def test_an_unclosed_header_is_reported():
    assert errors_of(b"---\nname: x\n") == [
        "line 1: the YAML header is not closed by a second `---` line"]


def test_invalid_yaml_in_the_header_names_its_line():
    errors = errors_of(b"---\nname: x\nversion: [1\n---\n")
    assert errors[0].startswith("line 3: header is not valid YAML")


def test_bytes_that_are_not_utf8_are_refused_with_their_line():
    assert errors_of(pack(GOOD_ITEM) + b"\xff\n") == ["line 9: not valid UTF-8"]


def test_an_empty_pack_is_refused():
    assert errors_of(pack()) == ["line 8: the pack has no items"]


def test_each_type_checks_its_own_fields():
    header = HEADER.replace("multiple_choice", "prompt_pairs")
    assert errors_of(pack({"prompt": "p"}, header=header)) == [
        "line 8: field `twin` is required", "line 8: field `refusal` is required",
        "line 8: field `compliance` is required"]
    header = HEADER.replace("multiple_choice", "bias_pairs")
    assert errors_of(pack({"template": "The {} are {}.", "more": "a", "less": "b"},
                          header=header)) == [
        "line 8: field `template` must contain `{}` exactly once"]
    assert errors_of(pack({"template": "People say {}", "more": "a", "less": "b"},
                          header=header)) == [
        "line 8: field `template` needs text after `{}` (the shared continuation)"]


def test_prompt_pairs_may_take_their_continuations_from_the_header():
    header = HEADER.replace("multiple_choice", "prompt_pairs").replace(
        "licence:", "refusal: I cannot help.\ncompliance: Sure.\nlicence:")
    loaded = load_pack(pack({"prompt": "bad?", "twin": "good?"}, header=header))
    assert loaded.option("refusal") == "I cannot help."


def test_an_upload_can_be_limited_to_the_custom_types():
    header = HEADER.replace("multiple_choice", "bias_pairs")
    data = pack({"template": "The {} win.", "more": "a", "less": "b"}, header=header)
    with pytest.raises(PackValidationError, match="line 4: field `type` must be one of"):
        load_pack(data, allowed_types=CUSTOM_PACK_TYPES)


def test_every_builtin_pack_is_valid_and_named_after_its_file():
    paths = builtin_pack_paths()
    assert {"heldout-en", "probe-en", "bias-pairs-en", "mc-facts-en", "refusal-pairs-en"} <= set(paths)
    for name, path in paths.items():
        loaded = load_builtin_pack(name)
        assert path.name == f"{loaded.name}.v{loaded.version}.jsonl"
        assert len(loaded.items) >= 10


def test_every_builtin_eval_default_pack_exists_with_the_right_type():
    for name in ("heldout_lm", "pairwise_bias", "mc_knowledge", "refusal_preference",
                 "drift_vs_parent", "finetune_attack"):
        spec = get_eval(name)
        assert load_builtin_pack(spec.params["pack"]).type in spec.pack_types
    attack = get_eval("finetune_attack")
    assert load_builtin_pack(attack.params["measure_pack"]).type in attack.pack_types


def test_each_custom_pack_type_is_usable_by_some_eval():
    assert evals_for_pack_type("multiple_choice") == ["mc_knowledge", "finetune_attack"]
    assert evals_for_pack_type("scored_text") == ["heldout_lm", "drift_vs_parent"]
    assert evals_for_pack_type("prompt_pairs") == ["refusal_preference", "finetune_attack"]
