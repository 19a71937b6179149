"""Model checkpoints (save_model / load_model) and the Hugging Face export (``blalm export``):
the exported folder loads with ``trust_remote_code`` in transformers 5.x (in process) and 4.51.3
(the BabyLM pipeline's pin, in a subprocess), without blalm importable, and gives blalm's logits,
honours right padding, and generates greedily exactly as blalm does.

Real tokenizer (trained here on held-out Wikipedia and CHILDES text), tiny fixed-seed models.
transformers 4.51.3 is pip-installed once into ``.cache/hf451`` (git-ignored) and reused.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sysconfig
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blalm import cli
from child_process import run_child
from conftest import jsonl_text_lines, pinned_packages
from blalm.errors import BlalmError, InputError
from blalm.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, is_model_checkpoint, load_model, save_model
from blalm.model.cli import load_model_config
from blalm.model.decoder import build_model
from blalm.model.export import BundleError, build_hf_sources, bundle_modules, export_hf
from blalm.model.generate import generate
from blalm.tokenizer.train import load_tokenizer, train_tokenizer

VOCAB = 500
NEW_TOKENS = 12
TEXTS = ["The cat sat on the mat because it was warm.", "Where is the ball?",
         "Paris is the capital and largest city of France, with an estimated population of two million."]
HF451_PINS = ("transformers==4.51.3", "tokenizers==0.21.1", "huggingface-hub==0.30.2", "requests==2.32.3",
              "urllib3==2.2.3", "charset-normalizer==3.4.0", "certifi==2024.8.30")
MODELS = {   # every mechanism at once (window 4 < the generated length), and the tied attention baseline
    "blalm": ("tiny_blalm.toml", ["short_conv=true", "hedgehog=true", "swa=memory", "swa_window=4",
                                  "chunk_size=4", "igate_bias_init=0.0"]),
    "transformer": ("tiny_transformer.toml", []),
}





@pytest.fixture(scope="module")
def tokenizer_dir(data_dir, tmp_path_factory) -> Path:
    lines = jsonl_text_lines(data_dir / "dev" / "wikipedia-000.jsonl.xz", 2000)
    lines += jsonl_text_lines(data_dir / "dev" / "childes-000.jsonl.xz", 2000)
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "train.txt").write_text("".join(line + "\n" for line in lines[:1700] + lines[2000:3700]), "utf-8")
    (corpus / "dev.txt").write_text("".join(line + "\n" for line in lines[1700:2000] + lines[3700:]), "utf-8")
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(corpus, out, vocab_size=VOCAB, show_progress=False)
    return out


def tiny_model(repo_root, name: str, seed: int = 0, *extra: str):
    config_file, overrides = MODELS[name]
    torch.manual_seed(seed)
    cfg = load_model_config(repo_root / "configs/model" / config_file, [f"vocab_size={VOCAB}", *overrides, *extra])
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def checkpoints(repo_root, tokenizer_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: save_model(tiny_model(repo_root, name), root / name, tokenizer_dir=tokenizer_dir)
            for name in MODELS}


@pytest.fixture(scope="module")
def exports(checkpoints, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {name: export_hf(path, root / name) for name, path in checkpoints.items()}


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip_is_bit_identical(repo_root, tokenizer_dir, tmp_path, name):
    model = tiny_model(repo_root, name, 5)
    with torch.no_grad():   # move every weight off its initial value, so nothing passes by re-initialisation
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_model(model, tmp_path / "ckpt", tokenizer_dir=tokenizer_dir)
    assert is_model_checkpoint(path) and not is_model_checkpoint(tokenizer_dir)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]           # no temp folders left
    stored = load_file(str(path / WEIGHTS_FILE))
    assert ("lm_head.weight" in stored) == (not model.config.tie_embeddings)        # a tied head is stored once
    assert json.loads((path / CONFIG_FILE).read_text())["mixer"] == model.config.mixer

    loaded = load_model(path)
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) and original[k].dtype == restored[k].dtype for k in original)
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert load_model(path, dtype=torch.bfloat16).embed_tokens.weight.dtype == torch.bfloat16

    save_model(loaded, path)                       # an existing checkpoint is replaced
    assert not (path / "tokenizer.json").exists()


def test_load_and_save_errors_name_the_folder(repo_root, tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        load_model(tmp_path / "nowhere")
    half = tmp_path / "half"
    half.mkdir()
    (half / CONFIG_FILE).write_text("{}")
    with pytest.raises(InputError, match=f"{half}: not a blalm model checkpoint: {WEIGHTS_FILE} missing"):
        load_model(half)

    path = save_model(tiny_model(repo_root, "blalm"), tmp_path / "ckpt")
    config = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps({**config, "hidden_size": 32, "num_heads": 2}))
    with pytest.raises(InputError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "do not fit" in str(info.value)
    assert "embed_tokens.weight has shape (500, 64), the config needs (500, 32)" in str(info.value)
    (path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_model(path)

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(BlalmError, match="is not a checkpoint .*todo.txt"):
        save_model(tiny_model(repo_root, "blalm"), other)
    assert (other / "todo.txt").read_text() == "keep me"


def test_export_refuses_what_is_not_a_checkpoint(checkpoints, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "hf"
    with pytest.raises(InputError) as info:
        export_hf(tokenizer_dir, out)
    assert f"{tokenizer_dir}: not a blalm model checkpoint" in str(info.value)
    assert cli.main(["export", str(tokenizer_dir), "--out", str(out)]) == 2
    assert "blalm export: error:" in capsys.readouterr().err
    assert not out.exists()

    bare = tmp_path / "bare"
    shutil.copytree(checkpoints["blalm"], bare, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(InputError, match="holds no tokenizer.*--tokenizer"):
        export_hf(bare, out)
    assert export_hf(bare, out, tokenizer_dir=tokenizer_dir) == out
    with pytest.raises(BlalmError, match="not a Hugging Face export"):
        export_hf(bare, tokenizer_dir, tokenizer_dir=tokenizer_dir)


# ----------------------------------------------------------------------------------------------
# the exported folder in transformers 5.x (this process)


@contextlib.contextmanager
def blalm_auto_registration_restored():
    """Run without blalm's classes in the Auto registries, and leave them as they were afterwards:
    importing ``blalm.model.hf`` registers them process-wide (another test may have), and a
    registered local class would shadow the exported folder's own code."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    configs, models = CONFIG_MAPPING._extra_content, AutoModelForCausalLM._model_mapping._extra_content

    def take() -> tuple[dict, dict]:
        return ({k: configs.pop(k) for k in list(configs) if k == "blalm"},
                {k: models.pop(k) for k in list(models) if getattr(k, "model_type", None) == "blalm"})

    saved = take()
    try:
        yield
    finally:
        take()
        configs.update(saved[0])
        models.update(saved[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_export_gives_blalm_logits_padding_and_generation_in_transformers_5(name, checkpoints, exports):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with blalm_auto_registration_restored():
        hf = AutoModelForCausalLM.from_pretrained(str(exports[name]), trust_remote_code=True).eval()
    assert type(hf).__module__.startswith("transformers_modules")     # the generated code, not blalm's
    tokenizer = AutoTokenizer.from_pretrained(str(exports[name]), trust_remote_code=True)
    assert tokenizer.padding_side == "right" and hf.dtype == torch.float32
    model = load_model(checkpoints[name])
    rows = [encode(tokenizer, text) for text in TEXTS]
    with torch.no_grad():
        for ids in rows:
            ids = torch.tensor([ids])
            ours, theirs = model(ids, labels=ids), hf(input_ids=ids, labels=ids)
            torch.testing.assert_close(theirs.logits, ours.logits, rtol=0, atol=1e-5)
            torch.testing.assert_close(theirs.loss, ours.loss, rtol=0, atol=1e-5)
        batch = tokenizer(TEXTS, padding=True, return_tensors="pt", add_special_tokens=False)
        assert batch["attention_mask"][:, -1].tolist() == [0, 0, 1]           # right padding
        padded = hf(**batch).logits
        for row, ids in enumerate(rows):
            torch.testing.assert_close(padded[row, :len(ids)], model(torch.tensor([ids])).logits[0],
                                       rtol=0, atol=1e-5)
        with pytest.raises(Exception, match="not right padding") as info:    # the bundled InputError
            hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].flip(-1))
        assert type(info.value).__name__ == "InputError"

    prompt = torch.tensor([rows[2][:7]])
    eos = tokenizer.eos_token_id
    ours = generate(model, prompt, NEW_TOKENS, eos_token_id=eos)
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                         do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(theirs, ours)
    assert torch.equal(hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                                   do_sample=False, use_cache=False, eos_token_id=eos,
                                   pad_token_id=tokenizer.pad_token_id), ours)
    beams = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS, num_beams=3, do_sample=False,
                 eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)        # the cache follows the beams
    assert torch.equal(hf.generate(prompt, **beams), hf.generate(prompt, use_cache=False, **beams))


def test_registered_blalm_classes_load_the_export_without_remote_code(checkpoints, exports):
    with blalm_auto_registration_restored():
        from transformers import AutoConfig, AutoModelForCausalLM

        from blalm.model.hf import BlalmConfig, BlalmHFForCausalLM, hf_model_from_blalm, register_with_transformers

        register_with_transformers()
        register_with_transformers()                                          # idempotent
        assert type(AutoConfig.from_pretrained(str(exports["blalm"]))) is BlalmConfig
        hf = AutoModelForCausalLM.from_pretrained(str(exports["blalm"])).eval()
        assert type(hf) is BlalmHFForCausalLM
        model = load_model(checkpoints["blalm"])
        ids = torch.randint(0, VOCAB, (1, 11), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            assert torch.equal(hf(ids).logits, model(ids).logits)
        wrapped = hf_model_from_blalm(model, eos_token_id=1, pad_token_id=2)  # shares the parameters
        assert wrapped.model is model
        assert torch.equal(wrapped.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False),
                           generate(model, ids, 5, eos_token_id=1))


def test_exported_code_is_generated_from_blalm_sources(exports):
    from transformers.dynamic_module_utils import get_imports

    sources = build_hf_sources()
    for filename, text in sources.items():
        exported = exports["blalm"] / filename
        assert exported.read_text(encoding="utf-8") == text
        assert not re.search(r"^\s*(import|from)\s+blalm", text, flags=re.MULTILINE)
        assert set(get_imports(str(exported))) <= {"torch", "transformers", "math", "inspect", "dataclasses",
                                                   "collections", "typing", "__future__"}
    assert "def mlstm_step(" in sources["modeling_blalm.py"]             # decoding travels with the model
    assert "def mlstm_chunkwise(" in sources["modeling_blalm.py"]
    assert "class BlalmConfig(PretrainedConfig)" in sources["configuration_blalm.py"]
    config = json.loads((exports["blalm"] / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_blalm.BlalmConfig",
                                  "AutoModelForCausalLM": "modeling_blalm.BlalmHFForCausalLM"}
    assert (config["model_type"], config["eos_token_id"], config["swa"]) == ("blalm", 1, "memory")


def test_bundler_refuses_what_it_cannot_bundle_safely(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "bundle_nested.py").write_text("def f():\n    from blalm.errors import InputError\n    return InputError\n")
    (tmp_path / "bundle_twice.py").write_text("from blalm.errors import InputError\n\nclass ConfigError(Exception):\n    pass\n")
    (tmp_path / "bundle_missing.py").write_text("from blalm.model.decoder import build_model\n")
    with pytest.raises(BundleError, match="inside a function"):
        bundle_modules([("bundle_nested", None)], "")
    with pytest.raises(BundleError, match="ConfigError is defined by both blalm.errors and bundle_twice"):
        bundle_modules([("blalm.errors", None), ("bundle_twice", None)], "")
    with pytest.raises(BundleError, match="build_model is imported from blalm but no module bundled"):
        bundle_modules([("blalm.errors", None), ("bundle_missing", None)], "")


# ----------------------------------------------------------------------------------------------
# the exported folder without blalm: transformers 5.x and 4.51.3 in a subprocess


@pytest.fixture(scope="session")
def transformers_451() -> Path:
    """transformers 4.51.3 (the BabyLM pipeline's pin) and the versions it needs, in .cache/hf451."""
    return pinned_packages("hf451", HF451_PINS, "transformers 4.51.3 (the BabyLM evaluation pipeline's pin)")


CHILD = r'''
import torch, transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(args["model"], trust_remote_code=True).eval()
# 4.51 reads tokenizer_config.json's class and never the model config: no remote code needed there;
# 5.x loads the config first, which names remote code (without the flag it asks, then falls back)
tok = AutoTokenizer.from_pretrained(args["model"], **({} if transformers.__version__.startswith("4.") else
                                                     {"trust_remote_code": True}))
batch = tok(args["texts"], padding=True, return_tensors="pt", add_special_tokens=False)
plain = transformers.PreTrainedTokenizerFast.from_pretrained(args["model"])    # no remote code in any version
plain_ids = [plain(t, add_special_tokens=False)["input_ids"] for t in args["texts"]]
with torch.no_grad():
    padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
prompt = torch.tensor([args["prompt"]])
lengths = []    # the tokens each forward of generate() feeds: the prompt, then one per new token (the cache)
hook = model.register_forward_pre_hook(lambda m, a, kw: lengths.append(int(kw["input_ids"].shape[1])), with_kwargs=True)
generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args["new_tokens"],
                           do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
hook.remove()
beams = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=args["new_tokens"], num_beams=3,
             do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
beam_cached, beam_recomputed = model.generate(prompt, **beams), model.generate(prompt, use_cache=False, **beams)
save_file({"padded": padded.contiguous(), "generated": generated.contiguous(), "beam_cached": beam_cached,
           "beam_recomputed": beam_recomputed}, args["out"] + "/result.safetensors")
json.dump({"transformers": transformers.__version__, "blalm_importable": blalm_importable,
           "model_module": type(model).__module__, "forward_lengths": lengths, "plain_ids": plain_ids,
           "tokenizer": type(tok).__name__, "is_fast": tok.is_fast,
           "special": [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id],
           "input_ids": batch["input_ids"].tolist(), "attention_mask": batch["attention_mask"].tolist()},
          open(args["out"] + "/result.json", "w"))
'''


@pytest.mark.parametrize("version", ["5.x", "4.51.3"])
def test_export_loads_without_blalm(version, checkpoints, exports, tmp_path, request):
    """python -I -S: no user site, no .pth files, so blalm's editable install is not on the path;
    only site-packages (torch, transformers 5.x) and, for 4.51.3, the pinned install before it."""
    paths = [sysconfig.get_paths()["purelib"]]
    if version == "4.51.3":
        paths.insert(0, str(request.getfixturevalue("transformers_451")))
    model = load_model(checkpoints["blalm"])
    tokenizer = load_tokenizer(checkpoints["blalm"])
    rows = [encode(tokenizer, text) for text in TEXTS]
    prompt = rows[2][:7]
    args = {"paths": paths, "model": str(exports["blalm"]), "texts": TEXTS, "prompt": prompt,
            "new_tokens": NEW_TOKENS, "out": str(tmp_path)}
    proc = run_child(CHILD, args, tmp_path, isolated=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    tensors = load_file(str(tmp_path / "result.safetensors"))

    assert not result["blalm_importable"]
    for needle in ("deprecated", "custom code", "model of type"):     # no warning, no [y/N] prompt
        assert needle not in proc.stderr, proc.stderr[-3000:]
    assert result["transformers"].startswith("5.") if version == "5.x" else result["transformers"] == "4.51.3"
    assert result["model_module"].startswith("transformers_modules")
    assert result["is_fast"] and result["special"] == [0, 1, 2]
    if version == "4.51.3":
        assert result["tokenizer"] == "PreTrainedTokenizerFast"
    assert result["plain_ids"] == rows
    for row, ids in enumerate(rows):                                     # same tokens, right padding
        assert result["input_ids"][row][:len(ids)] == ids
        assert result["attention_mask"][row] == [1] * len(ids) + [0] * (len(result["input_ids"][row]) - len(ids))
    with torch.no_grad():
        for row, ids in enumerate(rows):
            torch.testing.assert_close(tensors["padded"][row, :len(ids)], model(torch.tensor([ids])).logits[0],
                                       rtol=0, atol=1e-5)
    ours = generate(model, torch.tensor([prompt]), NEW_TOKENS, eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(tensors["generated"], ours)
    new_tokens = ours.shape[1] - len(prompt)
    assert result["forward_lengths"] == [len(prompt)] + [1] * (new_tokens - 1)   # the cache is used
    assert torch.equal(tensors["beam_cached"], tensors["beam_recomputed"])


# ----------------------------------------------------------------------------------------------
# CLI


def test_cli_exports_and_generates(checkpoints, tmp_path, capsys):
    path = str(checkpoints["blalm"])
    assert cli.main(["export", path, "--out", str(tmp_path / "hf")]) == 0
    assert "trust_remote_code=True" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "modeling_blalm.py", "tokenizer.json"} <= \
        {p.name for p in (tmp_path / "hf").iterdir()}

    assert cli.main(["generate", path, "--prompt", "The cat", "--max-new-tokens", "6", "--json",
                     "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    tokenizer = load_tokenizer(checkpoints["blalm"])
    ids = [tokenizer.eos_token_id] + encode(tokenizer, "The cat")
    expected = generate(load_model(checkpoints["blalm"]), torch.tensor([ids]), 6,
                        eos_token_id=tokenizer.eos_token_id)[0, len(ids):].tolist()
    expected = expected[:expected.index(1)] if 1 in expected else expected
    assert result["new_token_ids"] == expected and result["completion"] == tokenizer.decode(expected)

    sampled = []
    for _ in range(2):
        assert cli.main(["generate", path, "--prompt", "Where", "--temperature", "1.5", "--top-k", "50",
                         "--seed", "4", "--max-new-tokens", "8", "--device", "cpu"]) == 0
        sampled.append(capsys.readouterr().out)
    assert sampled[0] == sampled[1] and sampled[0].startswith("Where")
    assert cli.main(["generate", str(Path(path).parent / "missing"), "--prompt", "x"]) == 2
    assert "no such folder" in capsys.readouterr().err
