"""Tokenizer wrapper and streaming detokenization on a byte-level BPE trained here."""
import json
import random

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from mambart.tokenizer import StreamDecoder, Tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Café, crème brûlée, naïve façade, Ærøskøbing, São Paulo, Zürich.",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Emoji: 🐍🚀👩‍💻🇫🇷 and 🎉 mixed with text 😀.",
    "Ελληνικά και русский текст, עברית, العربية.",
    "Mamba is a state space model; selective scans run in linear time.",
]
SPECIALS = ["<|endoftext|>", "<|padding|>"]


def gpt2_byte_chars():
    """The printable stand-in character for each byte used by byte-level BPE."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    path = tmp_path_factory.mktemp("tok")
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def tok(model_dir):
    return Tokenizer.from_dir(model_dir)


def byte_ids(tok, data: bytes):
    """One single-byte token per byte: splits every multi-byte character."""
    chars = gpt2_byte_chars()
    ids = [tok.token_to_id(chars[b]) for b in data]
    assert None not in ids
    return ids


def stream(tok, ids, **kw):
    dec = tok.stream_decoder(**kw)
    pieces = [dec.push(i) for i in ids]
    return pieces, dec.flush()


# --- basics -----------------------------------------------------------------------


def test_round_trip_and_no_special_tokens_added(tok):
    for text in CORPUS:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert tok.eos_token_id not in ids
    assert tok.encode("") == []


def test_token_bytes_are_the_bytes_tokens_stand_for(tok):
    # Byte-level BPE: a token may be part of a character; its bytes still add up.
    for text in CORPUS:
        assert b"".join(tok.token_bytes(i) for i in tok.encode(text)) == text.encode("utf-8")
    assert [tok.token_bytes(i) for i in byte_ids(tok, "é".encode())] == [b"\xc3", b"\xa9"]
    assert tok.token_bytes(tok.eos_token_id) == b"<|endoftext|>"
    # Byte fallback (sentencepiece-style vocabularies): <0xNN> is that byte.
    vocab = {f"<0x{b:02X}>": b for b in range(256)} | {"a": 256, "<unk>": 257}
    fallback = HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    fallback.decoder = decoders.ByteFallback()
    t = Tokenizer(fallback)
    ids = t.encode("aé")
    assert ids == [256, 0xC3, 0xA9] and [t.token_bytes(i) for i in ids] == [b"a", b"\xc3", b"\xa9"]


def test_vocab_and_eos(tok):
    assert tok.vocab_size == 420
    assert tok.eos_token_id == tok.token_to_id("<|endoftext|>") == 0
    assert tok.decode([0]) == "<|endoftext|>"
    assert tok.decode([0, 1], skip_special_tokens=True) == ""


def test_eos_sources_in_priority_order(tmp_path, model_dir):
    (tmp_path / "tokenizer.json").write_text((model_dir / "tokenizer.json").read_text())
    assert Tokenizer.from_dir(tmp_path).eos_token_id == 0  # vocab fallback
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 5}))
    assert Tokenizer.from_dir(tmp_path).eos_token_id == 5
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 8]}))
    assert Tokenizer.from_dir(tmp_path).eos_token_id == 7
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": {"content": "<|padding|>", "special": True}}))
    assert Tokenizer.from_dir(tmp_path).eos_token_id == 1
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    assert Tokenizer.from_dir(tmp_path).eos_token_id == 0
    # Unknown token / out-of-range ids fall through to the next source.
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 10**6}))
    assert Tokenizer.from_dir(tmp_path).eos_token_id == 5


def test_no_eos_anywhere(tmp_path):
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    assert Tokenizer.from_file(tmp_path / "tokenizer.json").eos_token_id is None


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: cannot load tokenizer") as info:
        Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert "\n" not in str(info.value)


def test_broken_side_file_named(tmp_path, model_dir):
    (tmp_path / "tokenizer.json").write_text((model_dir / "tokenizer.json").read_text())
    (tmp_path / "generation_config.json").write_text("{")
    with pytest.raises(ValueError, match="generation_config.json: not valid JSON"):
        Tokenizer.from_dir(tmp_path)


# --- streaming ------------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_stream_encoded_text(tok, text):
    pieces, rest = stream(tok, tok.encode(text))
    assert "".join(pieces) + rest == text
    assert not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("text", CORPUS)
def test_stream_byte_by_byte_never_emits_partial_chars(tok, text):
    ids = byte_ids(tok, text.encode())
    pieces, rest = stream(tok, ids)
    assert "".join(pieces) + rest == text
    assert rest == ""  # valid text is all emitted by the last push
    assert not any("\ufffd" in p for p in pieces)
    # Each character appears as soon as its last byte arrives.
    assert sum(1 for p in pieces if p) == len(text)


def test_stream_random_ids_matches_decode(tok):
    rng = random.Random(1234)
    for _ in range(300):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(1, 40))]
        pieces, rest = stream(tok, ids)
        assert "".join(pieces) + rest == tok.decode(ids), ids


def test_stream_random_bytes_matches_decode(tok):
    # Byte tokens with many continuation / lead bytes: invalid UTF-8 of every kind.
    rng = random.Random(99)
    pool = [0x41, 0x20, 0x80, 0xBF, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xFF]
    for _ in range(300):
        data = bytes(rng.choice(pool) for _ in range(rng.randrange(1, 30)))
        ids = byte_ids(tok, data)
        pieces, rest = stream(tok, ids)
        assert "".join(pieces) + rest == tok.decode(ids) == data.decode("utf-8", "replace"), data


def test_stream_skip_special_tokens(tok):
    ids = tok.encode("Café ") + [0] + tok.encode("日本") + [1]
    pieces, rest = stream(tok, ids, skip_special_tokens=True)
    assert "".join(pieces) + rest == "Café 日本"
    pieces, rest = stream(tok, ids)
    assert "".join(pieces) + rest == "Café <|endoftext|>日本<|padding|>"


def test_flush_emits_invalid_tail_and_resets(tok):
    dec = tok.stream_decoder()
    out = [dec.push(i) for i in byte_ids(tok, b"ok\xe2\x82")]
    assert out == ["o", "k", "", ""]
    assert dec.flush() == "\ufffd"
    assert dec.flush() == ""
    assert dec.push(byte_ids(tok, b"x")[0]) == "x"  # usable again after flush


class CountingDecode:
    """Wraps decode and counts how many ids it was asked to decode."""

    def __init__(self, tok):
        self.tok, self.work = tok, 0

    def __call__(self, ids):
        self.work += len(ids)
        return self.tok.decode(ids)


@pytest.mark.parametrize("data", [
    "Zürich 日本語 🐍🚀 ".encode() * 60,   # valid text, split into bytes
    b"\x80" * 1000,                        # invalid bytes only: never a clean boundary
    b"\xf0\x9f" * 500,                     # truncated 4-byte sequences
])
def test_stream_cost_per_token_is_bounded(tok, data):
    ids = byte_ids(tok, data)
    counter = CountingDecode(tok)
    dec = StreamDecoder(counter)
    text = "".join(dec.push(i) for i in ids) + dec.flush()
    assert text == tok.decode(ids)
    assert counter.work < 60 * len(ids)  # re-decoding the history would be ~len(ids)**2 / 2
