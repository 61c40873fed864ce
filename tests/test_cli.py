"""`secformer infer`: end to end on a tiny checkpoint, and clear errors for bad input."""

import json

import pytest

from secformer_jax.cli import main
from secformer_jax.run import RECORD_KEYS

BASE = ["infer", "--text", "a gripping, beautifully made film"]


def test_infer_writes_the_documented_json(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out.json"
    code = main(BASE + ["--model", str(tiny_checkpoint[0]), "--protocol", "semi2k", "--approx", "secformer",
                        "--softmax", "2quad", "--max-length", "16", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(RECORD_KEYS) | {"text", "text_pair", "prediction", "plaintext_prediction", "head", "num_tokens"} <= result.keys()
    assert result["kind"] == "infer" and result["mode"] == "simulation" and result["seq_len"] == 16
    assert result["protocol"] == "semi2k"
    assert result["approx"] == {"preset": "secformer", "gelu": "secformer", "softmax": "2quad", "layernorm": "secformer"}
    assert result["send_bytes"] > 0 and result["by_op"] and result["lan_seconds"] > result["network_lan_seconds"] > 0
    assert result["max_abs_error"] < 0.05 * max(1.0, max(abs(x) for x in result["plaintext_logits"]))
    assert result["prediction"] in ("negative", "positive")
    assert result["threads"]["applied"] and result["threads"]["omp_thread_limit_in_effect"] == int(result["threads"]["OMP_THREAD_LIMIT"])
    printed = capsys.readouterr().out
    assert "prediction:" in printed and "max |error|" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--approx", "fancy"], "invalid choice: 'fancy'"),
        (["--protocol", "spdz"], "argument --protocol: unknown protocol 'spdz'; choose one of: semi2k, cheetah, aby3"),
        (["--gelu", "relu"], "invalid choice: 'relu'"),
    ],
)
def test_unknown_names_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(BASE + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--text", "   "], "text is empty"),
        (["--text-pair", ""], "text pair is empty"),
        (["--text", "word " * 40, "--max-length", "16"], "over the max length 16"),
        (["--max-length", "100"], "exceeds the model's 64 positions"),
        (["--model", "/nonexistent/model"], "does not exist"),
        (["--linear", "fixed-mask", "--protocol", "cheetah", "--approx", "puma"], "dealer-based protocol"),
        (["--protocol", "cheetah", "--approx", "secformer"], "cheetah runs without a dealer"),
        (["--linear", "fixed-mask", "--approx", "puma", "--field", "fm128"], "need field fm64"),
    ],
)
def test_bad_input_gives_a_clear_error(tiny_checkpoint, argv, message, capsys):
    argv = ["--model", str(tiny_checkpoint[0])] + argv if "--model" not in argv else argv
    assert main(BASE + argv) == 2
    err = capsys.readouterr().err
    assert "secformer: error:" in err and message in err and "Traceback" not in err


def test_nan_weights_are_refused_not_reported_as_agreement(tiny_checkpoint, tmp_path, capsys):
    import shutil

    from test_checkpoint import _poison

    shutil.copytree(tiny_checkpoint[0], tmp_path / "ckpt")
    _poison(tmp_path / "ckpt")
    assert main(BASE + ["--model", str(tmp_path / "ckpt"), "--max-length", "16"]) == 2
    captured = capsys.readouterr()
    assert "NaN or infinite" in captured.err and "agrees" not in captured.out + captured.err


def test_other_architecture_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    assert main(BASE + ["--model", str(tmp_path)]) == 2
    assert "only BERT" in capsys.readouterr().err


@pytest.mark.slow
def test_readme_demo_on_the_embedded_minilm(tmp_path):
    """The README's main job: MiniLM, SecFormer, ABY3 (about a minute; the shipped SST-2 head)."""
    out = tmp_path / "out.json"
    assert main(BASE + ["--protocol", "aby3", "--approx", "secformer", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    scale = max(abs(x) for x in result["plaintext_logits"])
    assert result["max_abs_error"] < 0.02 * max(1.0, scale)
    assert result["prediction"] == result["plaintext_prediction"]
