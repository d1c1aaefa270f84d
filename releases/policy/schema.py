"""The shape of a policy file, as JSON Schema, and the translation of schema errors into
`file:line:column: path problem` lines.

The schema checks shape only: keys, types, ranges, name patterns. What needs more than one
value at a time (ladder order, tier coverage, max-or-min, a dwell on the first stage) is
checked in `semantics.py`, where the message can say what the values mean together.

Each leaf may carry `x-message`, the words shown when that value is wrong; without it, the
validator's own message is used. `docs/policy.md` documents every key listed here.
"""

from __future__ import annotations

import difflib
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from releases.policy.errors import PolicyProblem
from releases.policy.yamlmarks import MarkedDocument, format_path

NAME = r"^[a-z][a-z0-9_]*$"
METRIC = r"^[A-Za-z_][A-Za-z0-9_.]*$"

_name = {"type": "string", "pattern": NAME,
         "x-message": "must be a name in lowercase letters, digits and _, starting with a letter"}
_text = {"type": "string", "minLength": 1, "x-message": "must be non-empty text"}
_number = {"type": "number", "x-message": "must be a number"}
_positive_int = {"type": "integer", "minimum": 1, "x-message": "must be a positive integer"}
_days = {"type": "integer", "minimum": 0, "x-message": "must be a whole number of days, 0 or more"}
_parameters = {"type": "number", "exclusiveMinimum": 0, "multipleOf": 1,
               "x-message": "must be a positive whole number of parameters, like 1e9"}
_eval_name = {"type": "string", "pattern": NAME,
              "x-message": "must be an eval name like canary_exposure (lowercase letters, "
                           "digits and _)"}
_metric = {"type": "string", "pattern": METRIC,
           "x-message": "must be a metric name like exposure_max"}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, "x-message": "must be a mapping of keys to values"}


def _list_of(item: dict) -> dict:
    return {"type": "array", "items": item, "x-message": "must be a list (one `- ` per item)"}


# A checkpoint that the lab has marked as already public, by family and label.
_reference = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*@\S+$",
              "x-message": "must name a checkpoint as org/name@label, e.g. open/base-1b@v1"}
THRESHOLD = _object({"eval": _eval_name, "metric": _metric, "max": _number, "min": _number,
                     # Relative to what is already open: at most this much above (below) the
                     # reference checkpoint's result on the same eval, under the same evidence.
                     "max_above_reference": _number, "min_below_reference": _number,
                     "reference": _reference},
                    required=("eval", "metric"))
CONDITION = _object({"eval": _eval_name, "metric": _metric, "above": _number, "below": _number},
                    required=("eval", "metric"))

RULE = _object({
    "allowed": {"type": "boolean", "x-message": "must be true or false"},
    "required_evals": _list_of(THRESHOLD),
    "approvals": _list_of(_object({"role": _name, "count": _positive_int},
                                  required=("role", "count"))),
    "min_dwell_days": _days,
    "terms": _object({"licence_version": _text, "text": _text, "url": _text},
                     required=("licence_version",)),
    "access": {"enum": ["manual", "automatic"], "x-message": "must be manual or automatic"},
    "form_fields": _list_of(_object({
        "name": _name, "label": _text,
        "required": {"type": "boolean", "x-message": "must be true or false"},
        "type": {"enum": ["text", "textarea", "email", "url", "checkbox"],
                 "x-message": "must be one of text, textarea, email, url, checkbox"},
    }, required=("name", "label"))),
    "expiry_days": _positive_int,
    # The checkpoint must carry a model.sig by one of its family's trusted signers.
    "require_signature": {"type": "boolean", "x-message": "must be true or false"},
})
RULE["x-message"] = "must be a rule: a mapping of keys to values ({} for a rule that needs nothing)"

POLICY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Stagegate release policy",
    **_object({
        "name": _text,
        "version": {"type": "string", "minLength": 1,
                    "x-message": 'must be text: quote it, e.g. version: "3"'},
        "description": _text,
        "ceilings": _object({
            "max_parameters": _parameters,
            "capability_evals": _list_of(THRESHOLD),
        }, required=("max_parameters",)),
        "tiers": {**_list_of(_object({
            "name": _name,
            "parameters_below": _parameters,
            "escalate_when": _list_of(CONDITION),
        }, required=("name",))), "minItems": 1},
        # Which run counts for an eval: its parameters and the content hash of each pack it
        # reads. Unnamed evals count with their defaults and the packs current at load time.
        "evidence": {"type": "object", "propertyNames": {"pattern": NAME},
                     "x-message": "must be a mapping of eval names to the parameters and packs "
                                  "that count",
                     "additionalProperties": _object({
                         "params": {"type": "object",
                                    "x-message": "must be a mapping of parameter names to values"},
                         "packs": {"type": "object", "additionalProperties": {
                             "type": "string", "pattern": r"^[0-9a-f]{64}$",
                             "x-message": "must be the pack's sha256 in quotes (64 lowercase hex "
                                          "characters, as the Evals page shows it)"},
                             "x-message": "must be a mapping of pack names to their sha256"},
                     })},
        "conversion": _object({
            "pytorch_to_safetensors": {"enum": ["on_request", "automatic"],
                                       "x-message": "must be on_request or automatic"},
        }),
        "stages": {"type": "object", "minProperties": 1, "x-message": "must be a mapping of "
                   "stage names (internal, partners, gated, open) to stages",
                   "additionalProperties": _object({
                       "audience": _text,
                       "tiers": {"type": "object", "additionalProperties": RULE,
                                 "x-message": "must be a mapping of tier names to rules"},
                   }, required=("audience", "tiers"))},
    }, required=("name", "version", "ceilings", "tiers", "stages")),
}

Draft202012Validator.check_schema(POLICY_SCHEMA)
_VALIDATOR = Draft202012Validator(POLICY_SCHEMA)


def schema_problems(document: MarkedDocument) -> list[PolicyProblem]:
    """Every place where the document does not have the policy's shape."""
    problems: list[PolicyProblem] = []
    for error in _VALIDATOR.iter_errors(document.data):
        problems.extend(_translate(document, error))
    unique = {(p.line, p.column, p.message): p for p in problems}
    return list(unique.values())


def _translate(document: MarkedDocument, error: ValidationError) -> list[PolicyProblem]:
    path = tuple(error.absolute_path)
    where = format_path(path)
    schema, instance = error.schema, error.instance
    if error.validator == "required" and isinstance(instance, dict):
        return [document.problem(path, f"{where} is missing {key}")
                for key in schema["required"] if key not in instance]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = sorted(schema.get("properties", {}))
        return [document.problem(path + (key,), _unknown_key(path, key, known), key=True)
                for key in instance if key not in known]
    if error.validator == "minItems":
        return [document.problem(path, f"{where} must list at least one item")]
    if error.validator == "minProperties":
        return [document.problem(path, f"{where} must name at least one stage")]
    message = schema.get("x-message")
    if message:
        return [document.problem(path, f"{where} {message}")]
    return [document.problem(path, f"{where}: {error.message}")]


def _unknown_key(path: tuple, key: str, known: list[str]) -> str:
    where = format_path(path + (key,))
    guess = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {guess[0]}? " if guess else ""
    return f"{where} is not a key this policy format knows; {hint}known keys here: " \
           f"{', '.join(known)}"
