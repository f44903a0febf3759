import numpy as np
import pytest

from charwright.runtime.errors import ConfigError, VocabularyError
from charwright.runtime.vocab import Vocabulary


def test_sorted_roundtrip_and_json(tmp_path):
    v = Vocabulary.from_text("hello, wörld\n")
    assert v.chars == tuple(sorted(set("hello, wörld\n")))
    ids = v.encode("wörld")
    assert ids.dtype == np.int32 and v.decode(ids) == "wörld"
    assert Vocabulary.from_dict(v.to_dict()) == v


def test_unknown_policies():
    v = Vocabulary.from_text("abc ")
    with pytest.raises(VocabularyError, match=r"2 character\(s\) not in the model's vocabulary: "
                                              r"'x' at 1, 'z' at 3"):
        v.encode("axbz")
    assert v.decode(v.encode("axbz", unknown="skip")) == "ab"
    assert v.decode(v.encode("axbz", unknown="replace")) == "a b "
    assert v.decode(v.encode("axbz", unknown="replace", replacement="c")) == "acbc"
    with pytest.raises(VocabularyError, match="replacement character 'q'"):
        v.encode("x", unknown="replace", replacement="q")
    with pytest.raises(ConfigError, match="unknown-character policy 'guess': use one of"):
        v.encode("a", unknown="guess")


def test_line_mode_newline_is_eos():
    v = Vocabulary.from_text("ab\nba\n", eos=True)
    assert v.chars == ("a", "b") and v.size == 3 and v.eos_id == 2
    assert v.encode("ab\nb").tolist() == [0, 1, 2, 1]
    assert v.decode([0, 2, 1]) == "ab"


@pytest.mark.parametrize("doc,message", [
    ({"format": "other"}, "vocabulary: not a charwright-vocab document"),
    ({"format": "charwright-vocab", "version": "1", "chars": ["a"]},
     "unsupported vocabulary version '1'"),
    ({"format": "charwright-vocab", "version": 1, "chars": "ab"}, "'chars' must be a list"),
    ({"format": "charwright-vocab", "version": 1, "chars": ["a"], "eos": "false"},
     "'eos' must be true or false, not 'false'"),
])
def test_rejects_bad_documents(doc, message):
    with pytest.raises(ConfigError, match=message):
        Vocabulary.from_dict(doc)


def test_rejects_unsorted_characters():
    with pytest.raises(ConfigError, match="distinct and sorted by code point"):
        Vocabulary(("b", "a"))


def test_missing_module_names_the_extra():
    from charwright.runtime.errors import BackendUnavailable, require

    with pytest.raises(BackendUnavailable, match=r"install it with: pip install 'charwright\[litert\]'"):
        require("charwright_no_such_module", "litert")
    with pytest.raises(BackendUnavailable, match="pip install --force-reinstall charwright"):
        require("charwright_no_such_module", None)
    assert issubclass(BackendUnavailable, ImportError) and BackendUnavailable.exit_code == 2


def test_a_lone_surrogate_is_not_a_vocabulary_character():
    with pytest.raises(ConfigError, match=r"lone surrogate \(U\+D800..U\+DFFF\)"):
        Vocabulary(("a", "\ud800"))
