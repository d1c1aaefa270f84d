"""The allow-list is torch's own weights_only list plus numpy array reconstruction, nothing on
it is dangerous, and known gadgets classify as dangerous."""

from __future__ import annotations

import pytest

from models.scanner import calls, policy


def test_the_torch_part_of_the_allow_list_is_exactly_what_weights_only_allows():
    from torch._weights_only_unpickler import _get_allowed_globals

    assert set(_get_allowed_globals()) == policy.TORCH_WEIGHTS_ONLY


def test_the_only_additions_are_numpy_array_reconstruction():
    assert policy.ALLOWED - policy.TORCH_WEIGHTS_ONLY == policy.NUMPY_RECONSTRUCTION
    assert all(name.startswith("numpy.") for name in policy.NUMPY_RECONSTRUCTION)


def test_nothing_allowed_is_also_dangerous():
    for name in policy.ALLOWED:
        module, _, attr = name.rpartition(".")
        assert policy.classify(module, attr) == policy.ALLOWED_CATEGORY, name
        assert not policy._is_dangerous(module, attr), name


def test_every_allowed_callable_is_modelled_and_the_rest_are_values():
    # Calls the scanner does not model are `unknown` even though weights_only would allow them.
    values = {n for n in policy.ALLOWED if n.rpartition(".")[2] in policy.TORCH_DTYPES
              or n.rpartition(".")[2] in policy.TORCH_STORAGE_DTYPES
              or n.rpartition(".")[2].startswith("per_")
              or n.endswith(("Tensor", "Storage", "numpy.ndarray"))}
    unmodelled = policy.ALLOWED - values - calls.HANDLED
    assert unmodelled == {"torch._utils._rebuild_nested_tensor",
                          "torch._utils._rebuild_wrapper_subclass"}


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("subprocess", "Popen"),
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "open"),
    ("builtins", "__import__"), ("__builtin__", "eval"), ("runpy", "_run_code"),
    ("pty", "spawn"), ("socket", "socket"), ("shutil", "rmtree"), ("importlib", "import_module"),
    ("pickle", "loads"), ("_pickle", "loads"), ("torch", "load"), ("torch.hub", "load"),
    ("torch.serialization", "load"), ("torch", "serialization.load"), ("numpy", "load"),
    ("webbrowser", "open"), ("code", "InteractiveInterpreter"), ("operator", "attrgetter"),
    ("functools", "partial"), ("pydoc", "locate"), ("ctypes", "CDLL"),
    ("torch.storage", "_load_from_bytes"), ("copyreg", "add_extension"),
    ("numpy.testing._private.utils", "runstring"),
    ("asyncio.subprocess", "create_subprocess_shell"),
])
def test_known_gadgets_are_dangerous(module, name):
    assert policy.classify(module, name) == policy.DANGEROUS_CATEGORY


def test_python2_names_map_to_their_python3_modules():
    assert policy.fix_py2_name("commands", "getoutput") == ("subprocess", "getoutput")
    assert policy.fix_py2_name("__builtin__", "set") == ("builtins", "set")
    assert policy.fix_py2_name("collections", "OrderedDict") == ("collections", "OrderedDict")


def test_whole_models_are_their_own_category():
    assert policy.classify("torch.nn.modules.container", "Sequential") == \
        policy.MODEL_OBJECT_CATEGORY
    assert policy.display_name("torch.nn.modules.container", "Sequential") == "torch.nn.Sequential"
    assert policy.classify("__main__", "Net") == policy.MODEL_OBJECT_CATEGORY
    assert policy.classify("datetime", "date") == policy.UNKNOWN_CATEGORY
