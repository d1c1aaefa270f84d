"""The census of a safe pickle: every tensor in the loaded object, by its dotted state-dict key.

Names follow what `torch.load` returns: nested dicts join keys with dots, lists and tuples use
the index, tied tensors appear once per name (as in `model.state_dict()`). Only tensors are
listed; numbers, strings and numpy arrays in the same object are not weights.
"""

from __future__ import annotations

from models.scanner import policy
from models.scanner.result import TensorMeta
from models.scanner.values import TensorValue

MAX_VISITS = 2_000_000


class TooLarge(ValueError):
    pass


def safetensors_dtype(torch_dtype: str) -> str:
    return policy.TORCH_DTYPES[torch_dtype][1]


def key_text(key) -> str:
    if isinstance(key, str):
        return key
    if type(key) in (int, bool, float) or key is None:
        return str(key)
    return repr(key) if isinstance(key, (bytes, tuple)) else type(key).__name__


def collect(value) -> list[TensorMeta]:
    found: list[TensorMeta] = []
    visits = 0
    # (value, name, ids of the containers on the path) — iterative, so depth costs no stack.
    pending: list[tuple[object, str, frozenset]] = [(value, "", frozenset())]
    while pending:
        node, name, path = pending.pop()
        visits += 1
        if visits > MAX_VISITS:
            raise TooLarge(f"the loaded object has more than {MAX_VISITS:,} parts")
        if isinstance(node, TensorValue):
            found.append(TensorMeta(name, safetensors_dtype(node.dtype), node.shape))
            continue
        if isinstance(node, dict):
            children = [(key_text(k), v) for k, v in node.items()]
        elif isinstance(node, (list, tuple)):
            children = [(str(i), v) for i, v in enumerate(node)]
        else:
            continue
        if id(node) in path:
            continue  # a container that contains itself
        inner = path | {id(node)}
        for child_name, child in reversed(children):
            pending.append((child, f"{name}.{child_name}" if name else child_name, inner))
    return found
