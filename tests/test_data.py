"""Normalisation, validation, reading a names folder, and fetching/extracting the archive."""

from __future__ import annotations

import hashlib
import io
import logging
import string
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import namecls
from namecls.data import names as nd

from conftest import tiny_names

SKIPPED_LINES = {"Maxa/B", "Rafaj1", "Urbanek1", "Whitmire1"}


# --- normalisation ---------------------------------------------------------------------------------------------

def test_alphabet_is_the_59_promised_characters():
    assert namecls.ALPHABET == string.ascii_letters + " .,:;-'"
    assert len(namecls.ALPHABET) == 59 == len(set(namecls.ALPHABET))
    assert namecls.MAX_NAME_LENGTH == 64


@pytest.mark.parametrize("raw, expected", [
    ("Ślusàrski", "Slusarski"),
    ("Straße", "Strasse"),
    ("Иванов", "Ivanov"),
    ("Müller-Lüdenscheidt", "Muller-Ludenscheidt"),
    ("O\u2019Neill", "O'Neill"),           # typographic apostrophe → ASCII apostrophe
    ("  van   der  Berg ", "van der Berg"),  # spaces collapsed and stripped
    ("Qin", "Qin"),
])
def test_normalize_transliterates(raw, expected):
    norm = namecls.normalize(raw)
    assert norm.text == expected
    assert norm.original == raw
    assert norm.dropped == ()
    assert norm.changed == (raw != expected)


@pytest.mark.parametrize("raw, text, dropped", [
    ("Rafaj1", "Rafaj", ("1",)),
    ("Maxa/B", "MaxaB", ("/",)),
    ("A1b2", "Ab", ("1", "2")),
    ("1234", "", ("1", "2", "3", "4")),
    ("Smith (Jr)", "Smith Jr", ("(", ")")),
])
def test_normalize_reports_dropped_characters(raw, text, dropped):
    norm = namecls.normalize(raw)
    assert norm.text == text
    assert norm.dropped == dropped
    assert norm.changed


def test_normalize_reports_characters_unidecode_erases():
    norm = namecls.normalize("Anna\U0001F600")
    assert norm.text == "Anna"
    assert norm.dropped != ()


def test_normalize_treats_any_whitespace_as_a_separator():
    assert namecls.normalize("van der\tBerg").text == "van der Berg"


def test_normalize_never_raises_on_empty():
    assert namecls.normalize("").text == ""
    assert namecls.normalize("   ").text == ""


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_normalized_text_stays_in_alphabet(raw):
    text = namecls.normalize(raw).text
    assert set(text) <= set(namecls.ALPHABET)
    assert text == text.strip() and "  " not in text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_validate_accepts_only_readable_names(raw):
    try:
        norm = nd.validate(raw)
    except ValueError as err:
        assert str(err)
    else:
        assert 1 <= len(norm.text) <= namecls.MAX_NAME_LENGTH
        assert any(c.isalpha() for c in norm.text)


# --- validation ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["", " ", "   \t\n "])
def test_validate_empty(raw):
    with pytest.raises(ValueError, match="empty"):
        nd.validate(raw)


# the last: 119 characters once transliterated
@pytest.mark.parametrize("raw", ["x" * 65, "Abc" * 30, "x" * 1000, "李" * 40])
def test_validate_too_long(raw):
    with pytest.raises(ValueError, match="too long"):
        nd.validate(raw)


def test_validate_accepts_the_longest_allowed_name():
    assert nd.validate("x" * 64).text == "x" * 64


def test_validate_digits_only_says_what_was_dropped():
    with pytest.raises(ValueError) as info:
        nd.validate("1234")
    message = str(info.value)
    assert "letter" in message and "1234" in message
    assert "empty" not in message  # the input was not empty: the message must not claim it was


@pytest.mark.parametrize("raw", ["\U0001F600", "\U0001F600\U0001F389", "---", "..."])
def test_validate_no_letters(raw):
    with pytest.raises(ValueError, match="letter"):
        nd.validate(raw)


@pytest.mark.parametrize("raw", [None, 42, b"Qin", ["Qin"]])
def test_validate_non_string(raw):
    with pytest.raises(ValueError, match="string"):
        nd.validate(raw)


def test_validate_returns_the_normalised_name():
    norm = nd.validate("  Ślusàrski ")
    assert norm.text == "Slusarski"


# --- reading a folder ------------------------------------------------------------------------------------------

def test_read_real_folder(names_data):
    assert len(names_data.names) == 20_070 == len(names_data.targets)
    assert len(names_data.labels) == 18
    assert names_data.labels == sorted(names_data.labels)
    assert {"Arabic", "Chinese", "Russian", "Vietnamese"} <= set(names_data.labels)
    assert len(names_data.skipped) == 4
    assert {line for _, line in names_data.skipped} == SKIPPED_LINES
    assert all(lang == "Czech" for lang, _ in names_data.skipped)
    assert all(n and set(n) <= set(namecls.ALPHABET) for n in names_data.names)
    assert set(names_data.targets) == set(range(18))


def test_real_folder_line_count(data_dir, names_data):
    lines = sum(1 for f in data_dir.glob("*.txt")
                for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    assert lines == 20_074 == len(names_data.names) + len(names_data.skipped)


def test_real_folder_labels_come_from_file_stems(data_dir, names_data):
    russian = names_data.labels.index("Russian")
    raw = [line.strip() for line in (data_dir / "Russian.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert sum(t == russian for t in names_data.targets) == len(raw)


def test_read_names_logs_skipped_count(data_dir, caplog):
    with caplog.at_level(logging.INFO, logger="namecls.data.names"):
        nd.read_names(data_dir)
    assert "skipped 4 lines" in caplog.text


def test_fingerprint_is_stable(data_dir, names_data):
    again = nd.read_names(data_dir)
    assert again.fingerprint == names_data.fingerprint
    assert len(names_data.fingerprint) == 64 and int(names_data.fingerprint, 16) >= 0


def test_real_files_match_the_published_hashes(data_dir):
    found = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in data_dir.glob("*.txt")}
    assert found == nd.DATA_SHA256


def test_read_tiny_folder(tiny_data_dir):
    data = nd.read_names(tiny_data_dir)
    expected = tiny_names()
    assert data.labels == sorted(expected)
    assert len(data.names) == sum(len(v) for v in expected.values())
    assert data.skipped == []
    for name, target in zip(data.names, data.targets):
        assert name in expected[data.labels[target]]


def test_fingerprint_changes_with_content(tiny_data_dir):
    before = nd.read_names(tiny_data_dir).fingerprint
    path = tiny_data_dir / "Elvish.txt"
    path.write_text(path.read_text(encoding="utf-8") + "Legolas\n", encoding="utf-8")
    after = nd.read_names(tiny_data_dir)
    assert after.fingerprint != before
    assert "Legolas" in after.names


def test_read_names_skips_and_normalises(tmp_path):
    (tmp_path / "Zeta.txt").write_text("Good\nBad1\n\n  \nÉmile\nMaxa/B\n", encoding="utf-8")
    (tmp_path / "Alpha.txt").write_text("Ivanov\nИванов\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a language\n", encoding="utf-8")
    data = nd.read_names(tmp_path)
    assert data.labels == ["Alpha", "Zeta"]
    assert list(zip(data.names, data.targets)) == [("Ivanov", 0), ("Ivanov", 0), ("Good", 1), ("Emile", 1)]
    assert data.skipped == [("Zeta", "Bad1"), ("Zeta", "Maxa/B")]


def test_labels_are_sorted_even_when_one_stem_prefixes_another(tmp_path):
    (tmp_path / "A.txt").write_text("Abc\n", encoding="utf-8")
    (tmp_path / "A-B.txt").write_text("Def\n", encoding="utf-8")
    data = nd.read_names(tmp_path)
    assert data.labels == sorted(data.labels)
    assert dict(zip(data.names, (data.labels[t] for t in data.targets))) == {"Abc": "A", "Def": "A-B"}


def test_read_names_never_yields_an_empty_name(tmp_path):
    (tmp_path / "X.txt").write_text("\U0001F600\nAbc\n\u0301\n", encoding="utf-8")
    data = nd.read_names(tmp_path)
    assert data.names == ["Abc"]
    assert len(data.skipped) == 2


def test_read_names_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        nd.read_names(tmp_path)


# --- encoding --------------------------------------------------------------------------------------------------

def test_pad_batch():
    batch, lengths = nd.pad_batch(["Abc", "x", "O'N"])
    assert batch.shape == (3, 3)
    assert lengths.tolist() == [3, 1, 3]
    assert batch[0].tolist() == [namecls.ALPHABET.index(c) for c in "Abc"]
    assert batch[1, 0].item() == namecls.ALPHABET.index("x")
    assert batch[2].tolist() == nd.encode("O'N")


# --- download and extraction -----------------------------------------------------------------------------------

def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buffer.getvalue()


TINY_FILES = {"Alpha.txt": "Ab\nCd\n".encode(), "Beta.txt": "Ef\nÉmile\n".encode()}


@pytest.fixture
def tiny_hashes(monkeypatch):
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in TINY_FILES.items()}
    monkeypatch.setattr(nd, "DATA_SHA256", hashes)
    return hashes


def _archive(files=TINY_FILES) -> bytes:
    members = {f"data/names/{name}": content for name, content in files.items()}
    members["data/eng-fra.txt"] = b"Go.\tVa !\n"  # other parts of data.zip must not be extracted
    members["data/names/README.md"] = b"not a names file\n"
    return _zip(members)


def test_extract_names_accepts_matching_hashes(tmp_path, tiny_hashes):
    dest = tmp_path / "names"
    assert nd.extract_names(_archive(), dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["Alpha.txt", "Beta.txt"]
    for name, content in TINY_FILES.items():
        assert (dest / name).read_bytes() == content
    assert nd.read_names(dest).names == ["Ab", "Cd", "Ef", "Emile"]


def test_extract_names_refuses_a_hash_mismatch(tmp_path, tiny_hashes):
    dest = tmp_path / "names"
    tampered = {**TINY_FILES, "Beta.txt": b"Ef\nEvil\n"}
    with pytest.raises(RuntimeError, match=r"Beta\.txt.*SHA-256"):
        nd.extract_names(_archive(tampered), dest)
    assert not (dest / "Beta.txt").exists()


def test_extract_names_leaves_nothing_behind_on_a_mismatch(tmp_path, tiny_hashes):
    dest = tmp_path / "names"
    tampered = {**TINY_FILES, "Beta.txt": b"Ef\nEvil\n"}
    with pytest.raises(RuntimeError):
        nd.extract_names(_archive(tampered), dest)
    assert not list(dest.glob("*.txt"))


def test_extract_names_refuses_a_missing_file(tmp_path, tiny_hashes):
    with pytest.raises(RuntimeError, match="Beta.txt"):
        nd.extract_names(_archive({"Alpha.txt": TINY_FILES["Alpha.txt"]}), tmp_path / "names")


def test_extract_real_archive_layout(tmp_path, data_dir):
    """A zip laid out like data.zip, built from the real folder, passes the project's own hash list."""
    files = {f.name: f.read_bytes() for f in data_dir.glob("*.txt")}
    dest = nd.extract_names(_archive(files), tmp_path / "names")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == files


def test_download_from_a_local_url(tmp_path, tiny_hashes):
    archive = tmp_path / "data.zip"
    archive.write_bytes(_archive())
    dest = nd.download(tmp_path / "names", url=archive.as_uri(), timeout=5)
    assert sorted(p.name for p in dest.iterdir()) == ["Alpha.txt", "Beta.txt"]


def test_download_into_a_folder_of_other_files_refuses_and_removes_nothing(tmp_path, tiny_hashes):
    archive = tmp_path / "data.zip"
    archive.write_bytes(_archive())
    dest = tmp_path / "names"
    dest.mkdir()
    (dest / "Mine.txt").write_text("Keep\n")
    (dest / "Alpha.txt").write_text("old\n")
    with pytest.raises(RuntimeError, match="holds other files") as refused:
        nd.download(dest, url=archive.as_uri(), timeout=5)
    assert "offline" not in str(refused.value)  # the hint is for a failed download only
    assert sorted(p.name for p in dest.iterdir()) == ["Alpha.txt", "Mine.txt"]
    assert (dest / "Alpha.txt").read_text() == "old\n"


def test_download_offline_says_to_pass_data_dir(tmp_path):
    with pytest.raises(RuntimeError, match="--data-dir"):
        nd.download(tmp_path / "names", url="http://127.0.0.1:9/data.zip", timeout=5)
    assert not list(tmp_path.rglob("*.txt"))


# --- the suite's own skipping policy ---------------------------------------------------------------------------

def test_require_skips_locally_and_fails_in_ci(monkeypatch):
    import conftest

    conftest.require(True, "never raised")
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="no data"):
        conftest.require(False, "no data")
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="NAMECLS_CI=1.*no data"):
        conftest.require(False, "no data")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz"):
        conftest.require_module("no_such_module_xyz")
    assert conftest.require_module("json").dumps([]) == "[]"


def test_find_data_dir_honours_the_environment(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setenv("NAMECLS_DATA_DIR", str(tmp_path))
    assert conftest.find_data_dir() is None  # exists but holds no *.txt: not a names folder
    (tmp_path / "Elvish.txt").write_text("Elrond\n", encoding="utf-8")
    assert conftest.find_data_dir() == tmp_path
    monkeypatch.setenv("NAMECLS_DATA_DIR", str(tmp_path / "missing"))
    assert conftest.find_data_dir() is None


def test_gradio_and_hub_are_kept_offline():
    import os

    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") is not None
    assert os.environ.get("HF_HUB_OFFLINE") is not None
    assert os.environ.get("HF_HUB_DISABLE_TELEMETRY") is not None
