import pytest

from charwright.runtime.errors import CorpusError
from charwright.trainer.corpus import read_corpus


def test_concatenates_files_in_order_and_records_identity(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("héllo\n", encoding="utf-8")
    b.write_text("wörld", encoding="utf-8")
    c = read_corpus([a, b])
    assert c.text == "héllo\nwörld"
    assert [f[1] for f in c.files] == [6, 5]
    assert c.files[0][0] == str(a.resolve())  # absolute, so resume and export work elsewhere
    assert read_corpus([b, a]).sha256 != c.sha256


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"abc\xffdef")
    with pytest.raises(CorpusError, match=r"bad\.txt: invalid UTF-8 at byte offset 3"):
        read_corpus([p])


def test_empty_and_missing(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="the corpus is empty"):
        read_corpus([empty])
    with pytest.raises(CorpusError, match="corpus file not found"):
        read_corpus([tmp_path / "nope.txt"])
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus([tmp_path])


def test_byte_order_mark_is_not_text(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffabc".encode("utf-8"))
    assert read_corpus([p]).text == "abc"
