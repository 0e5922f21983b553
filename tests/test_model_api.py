"""The Python API: load, logits, decoder, generate, stream, and bad input."""
import numpy as np
import pytest

import mambart


@pytest.fixture(scope="module")
def model(small_model_dir):
    return mambart.load(small_model_dir[0], threads=2)


def test_logits_shape_and_equal_to_stepwise(model):
    ids = [5, 17, 3, 99, 42, 7]
    all_rows = model.logits(ids)
    assert all_rows.shape == (len(ids), model.config.vocab_size)
    assert all_rows.dtype == np.float32
    dec = model.decoder(1)
    dec.prefill([ids[:1]])
    steps = [dec.logits()[0]]
    for t in ids[1:]:
        dec.step([t])
        steps.append(dec.logits()[0])
    np.testing.assert_allclose(all_rows, np.stack(steps), rtol=0, atol=1e-5 * np.abs(all_rows).max())


def test_logits_accepts_numpy_ids(model):
    ids = np.array([1, 2, 3], dtype=np.int32)
    np.testing.assert_array_equal(model.logits(ids), model.logits([1, 2, 3]))


def test_greedy_generate_is_deterministic_and_equals_stream(model):
    a = model.generate("def fibonacci(n):", max_new_tokens=16, temperature=0)
    b = "".join(model.stream("def fibonacci(n):", max_new_tokens=16, temperature=0))
    assert a == b


def test_seeded_sampling_is_reproducible(model):
    kw = dict(max_new_tokens=24, temperature=1.0, top_k=40, top_p=0.9, seed=1234)
    assert model.generate("Mamba is", **kw) == model.generate("Mamba is", **kw)
    outs = {model.generate("Mamba is", max_new_tokens=24, temperature=1.5, seed=s) for s in range(5)}
    assert len(outs) > 1


def test_stream_counts_tokens(model):
    stream = model.stream("The quick", max_new_tokens=10, temperature=0)
    text = "".join(stream)
    assert stream.stats.prefill_tokens == len(model.tokenizer.encode("The quick"))
    assert stream.stats.decode_tokens == len(stream.token_ids) or stream.stats.stop_reason == "eos"
    assert text == model.tokenizer.decode(stream.token_ids)


def test_stop_string_cuts_the_text(model):
    full = model.generate("def ", max_new_tokens=30, temperature=0)
    if len(full) < 4:
        pytest.fail(f"greedy text too short to test stop strings: {full!r}")
    stop = full[2:4]
    cut = model.generate("def ", max_new_tokens=30, temperature=0, stop=[stop])
    assert cut == full[: full.find(stop)]
    assert "".join(model.stream("def ", max_new_tokens=30, temperature=0, stop=[stop])) == cut


def test_batch_generate_row0_equals_single(model):
    kw = dict(max_new_tokens=12, temperature=0.8, seed=7)
    batch = model.generate(["Mamba is", "import numpy"], **kw)
    assert batch[0] == model.generate("Mamba is", **kw)
    assert batch[1] == model.generate("import numpy", **dict(kw, seed=8))


@pytest.mark.parametrize("bad", [
    dict(temperature=-1.0), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=-0.1),
    dict(min_p=2.0), dict(repetition_penalty=0.0), dict(temperature=float("nan")), dict(max_new_tokens=-1),
])
def test_invalid_generation_parameters(model, bad):
    with pytest.raises(ValueError):
        model.generate("hello", **{"max_new_tokens": 4, **bad})


def test_empty_prompt_is_an_error(model):
    with pytest.raises(ValueError, match="prompt is empty"):
        model.generate("", max_new_tokens=4)


def test_token_ids_out_of_range(model):
    V = model.config.vocab_size
    with pytest.raises(ValueError, match="out of range"):
        model.logits([1, V])
    with pytest.raises(ValueError, match="out of range"):
        model.logits([-1])
    dec = model.decoder(1)
    dec.prefill([[1, 2]])
    with pytest.raises(ValueError, match="out of range"):
        dec.step([V + 5])


def test_decoder_misuse(model):
    dec = model.decoder(2)
    with pytest.raises(ValueError, match="prompts for a decoder of batch 2"):
        dec.prefill([[1, 2]])
    with pytest.raises(ValueError, match="is empty"):
        dec.prefill([[1], []])
    with pytest.raises(ValueError, match="no logits yet"):
        dec.sample()
    with pytest.raises(ValueError):
        model.logits([])


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        mambart.load(tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="device"):
        mambart.load(tmp_path, device="tpu")
    with pytest.raises(ValueError, match="threads"):
        mambart.load(tmp_path, threads=0)


def test_one_model_from_several_threads(model):
    """Decoders of one model share its thread pool: concurrent calls must neither hang nor mix results."""
    import threading

    ids = [5, 17, 3, 99, 42, 7, 8, 9]
    expected = model.logits(ids)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(model.logits(ids))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a concurrent call hung"
    assert not errors and len(results) == 15
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_thread_pools_start_and_stop_at_once(small_model_dir, tmp_path):
    """A model dropped before its workers have started, or right after a call, must not hang (child with a timeout)."""
    import subprocess
    import sys

    code = (
        "import sys, mambart\n"
        "for i in range(40):\n"
        "    m = mambart.load(sys.argv[1], threads=4)\n"
        "    if i % 2: m.logits([1, 2, 3])\n"
        "    del m\n"
        "print('ok')\n"
    )
    # cwd away from the sources: a checkout's mambart/ would shadow the installed package
    out = subprocess.run([sys.executable, "-c", code, str(small_model_dir[0])], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_argument_types_and_bounds(model, small_model_dir):
    with pytest.raises(ValueError, match="threads"):
        mambart.load(small_model_dir[0], threads=3_000_000_000)
    with pytest.raises(TypeError, match="str"):
        model.generate(b"bytes", max_new_tokens=2)
    with pytest.raises(TypeError, match="str"):
        model.generate(None, max_new_tokens=2)
    # A top_k beyond any vocabulary keeps everything, like top_k = vocabulary size.
    kw = dict(max_new_tokens=6, temperature=0.9, seed=3)
    assert model.generate("abc", top_k=2**70, **kw) == model.generate("abc", top_k=0, **kw)
    dec = model.decoder(2)
    with pytest.raises(ValueError, match=r"\[history\]"):
        dec.history(-1)


def test_device_logits_need_cuda(model):
    """The zero-copy device views of the logits exist only on the CUDA backend."""
    d = model.decoder(1)
    with pytest.raises(ValueError, match="on_device needs the CUDA backend"):
        d.prefill_logits_device([1, 2, 3])
    d.prefill([[1, 2, 3]])
    with pytest.raises(ValueError, match="host memory"):
        d.logits_device()
    # all_logits on the CPU is a view of the backend's tensor that outlives the decoder
    all_logits = model.decoder(1).prefill([[1, 2, 3]], all_logits=True)
    np.testing.assert_array_equal(all_logits[-1], d.logits()[0])
