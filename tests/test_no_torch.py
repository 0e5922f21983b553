"""The runtime never imports torch or transformers."""
import subprocess
import sys
import tempfile
import textwrap


def test_runtime_does_not_import_torch(small_model_dir):
    code = textwrap.dedent(f"""
        import sys
        import mambart
        model = mambart.load({str(small_model_dir[0])!r})
        model.generate("hello", max_new_tokens=4, temperature=0.7, top_k=5, seed=1)
        model.logits([1, 2, 3])
    """)
    _assert_clean(code)


def test_server_does_not_import_torch(small_model_dir):
    code = textwrap.dedent(f"""
        import sys
        import mambart
        from mambart.serve import build
        from mambart.serve.scheduler import Request
        model = mambart.load({str(small_model_dir[0])!r})
        app, scheduler = build(model, model_name="m")
        req = scheduler.submit(Request(model.tokenizer.encode("hello"), max_tokens=3))
        while not req.finished:
            req.events.get(timeout=30)
        scheduler.close()
    """)
    _assert_clean(code)


def _assert_clean(code: str) -> None:
    """Runs code in a fresh interpreter and checks it imported no torch or transformers."""
    code += textwrap.dedent("""
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        assert not bad, bad
        print("clean")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "clean"
