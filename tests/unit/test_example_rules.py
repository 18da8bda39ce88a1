"""The pure rules inside the examples, which users copy: tested here without a cluster
(tests/cluster/test_examples.py runs the examples whole)."""

from __future__ import annotations

import importlib.util
import unicodedata
from pathlib import Path
from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unique = example("unique_username")


def test_spellings_of_one_name_share_an_index_key() -> None:
    same = [
        ("Ada", "ada"),
        ("\uff41\uff44\uff41", "ada"),  # fullwidth
        ("straße", "STRASSE"),
        ("\u03aa\u0300", "\u1fd2"),  # one pass of NFKC then casefold leaves these apart
        ("ß\u0301", "sś"),
    ]
    for a, b in same:
        assert unique.name_key(a) == unique.name_key(b), (a, b)
    assert unique.name_key("ada") != unique.name_key("adb")


@given(st.text(max_size=8))
def test_canonical_is_a_fixed_point(text: str) -> None:
    """Canonical twice is canonical once, and already NFKC: so no two spellings that one
    more pass would join can get different keys."""
    once = unique.canonical(text)
    assert unique.canonical(once) == once
    assert unicodedata.normalize("NFKC", once) == once
