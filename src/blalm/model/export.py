"""``blalm export``: a checkpoint as a self-contained Hugging Face model folder.

    OUT/
      config.json               model_type "blalm", the ModelConfig fields, token ids, and
                                auto_map -> configuration_blalm.BlalmConfig / modeling_blalm.BlalmHFForCausalLM
      generation_config.json    bos / eos / pad token ids
      model.safetensors         the weights, named as in BlalmHFForCausalLM ("model." + blalm's names)
      configuration_blalm.py    generated from blalm's sources (see below)
      modeling_blalm.py         generated from blalm's sources
      tokenizer.json, tokenizer_config.json, ...

``AutoModelForCausalLM.from_pretrained(OUT, trust_remote_code=True)`` and
``AutoTokenizer.from_pretrained(OUT, trust_remote_code=True)`` (as the BabyLM pipeline calls them)
load it with transformers 4.51 (the pipeline's pin) or 5.x, with no blalm installed, silently.
The tokenizer is a plain ``PreTrainedTokenizerFast`` (``tokenizer_config.json`` names no custom
code): ``PreTrainedTokenizerFast.from_pretrained(OUT)`` loads it without remote code in any version,
and so does ``AutoTokenizer.from_pretrained(OUT)`` in 4.51. transformers 5.x's ``AutoTokenizer``
reads ``config.json`` before the tokenizer's own files, and the config class of a ``blalm`` model
is the exported code: without ``trust_remote_code`` it asks "[y/N]" (no file layout avoids that
short of claiming another model type, which would let ``AutoModelForCausalLM`` load the weights
into a wrong architecture without the flag).

**One copy of the model code.** The two ``.py`` files are not maintained by hand: at export they
are *bundled* from the very modules blalm runs (:data:`CONFIG_BUNDLE`, :data:`MODELING_BUNDLE`),
concatenated in dependency order with their ``blalm`` imports removed; the modelling file imports
the config file's names relatively (``from .configuration_blalm import ...``). The bundler
refuses what it cannot bundle safely: a ``blalm`` import inside a function or under a condition,
a name defined by two bundled modules, a stripped name that no bundled module defines.
Only pure-PyTorch mLSTM kernels travel; a checkpoint that names another kernel is exported with
``mlstm_kernel = "chunkwise"`` (the same function).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from blalm.config import to_dict
from blalm.errors import BlalmError, InputError
from blalm.model.checkpoint import (
    WEIGHTS_FILE,
    _check_replaceable,
    _tokenizer_files,
    checkpoint_tokenizer_dir,
    is_model_checkpoint,
    load_model,
)
from blalm.atomic import atomic_dir, write_json_atomic, write_safetensors

CONFIG_MODULE = "configuration_blalm"
MODELING_MODULE = "modeling_blalm"
HF_CONFIG_CLASS = "BlalmConfig"
HF_MODEL_CLASS = "BlalmHFForCausalLM"
BUNDLED_KERNELS = ("chunkwise", "parallel", "recurrent")

# (module, names to take) — None takes the whole module. Order = dependency order.
CONFIG_BUNDLE: list[tuple[str, tuple[str, ...] | None]] = [
    ("blalm.errors", None),
    ("blalm.config", ("check",)),
    ("blalm.model.config", None),
    ("blalm.model.hf_config", None),
]
MODELING_BUNDLE: list[tuple[str, tuple[str, ...] | None]] = [
    ("blalm.model.ops.mlstm.common", None),
    ("blalm.model.ops.mlstm.parallel", None),
    ("blalm.model.ops.mlstm.chunkwise", None),
    ("blalm.model.ops.mlstm.recurrent", None),
    ("blalm.model.ops.mlstm.registry", None),
    ("blalm.model.cache", None),
    ("blalm.model.layers", None),
    ("blalm.model.mlstm_layer", None),
    ("blalm.model.decoder", None),
    ("blalm.model.hf_model", None),
]


class BundleError(BlalmError):
    """blalm's sources cannot be bundled into a self-contained file (a bug in blalm, not in the input)."""


# ----------------------------------------------------------------------------------------------
# bundling


def _is_blalm_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "blalm"
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "blalm" for alias in node.names)
    return False


def _bound_names(node: ast.stmt) -> list[tuple[str, str]]:
    """``(name, what)`` for each top-level name a statement binds; ``what`` tells a definition
    from an import of a given object (two imports of the same object may coexist)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(node.name, "def")]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [(n.id, "def") for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.Import):
        return [((a.asname or a.name).split(".")[0], f"import {a.name}") for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [(a.asname or a.name, f"from {node.module} import {a.name}") for a in node.names]
    return []


@dataclass
class _Bundle:
    text: str
    defined: set[str]


def bundle_modules(specs: list[tuple[str, tuple[str, ...] | None]], header: str,
                   provided: dict[str, str] | None = None) -> _Bundle:
    """One Python source from ``specs`` (see :data:`MODELING_BUNDLE`). ``provided``: names that
    another generated file defines, ``{name: relative module}``; the bundle imports those it needs."""
    provided = provided or {}
    bindings: dict[str, tuple[str, str]] = {}     # name -> (what, module)
    parts: list[str] = []
    needed_from_outside: set[str] = set()
    for module, only in specs:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise BundleError(f"cannot find the source of {module}")
        path = Path(spec.origin)
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if _is_blalm_import(node) and id(node) not in top:
                raise BundleError(f"{path}:{node.lineno}: a blalm import inside a function or block cannot be "
                                  f"bundled into the exported model code; move it to the top of the module")
        lines = source.splitlines(keepends=True)
        out: list[str] = [f"# {'-' * 94}\n# from {module.replace('.', '/')}.py\n"]
        if only is not None:
            wanted = set(only)
            chosen = [n for n in tree.body if {name for name, _ in _bound_names(n)} & wanted
                      and not isinstance(n, (ast.Import, ast.ImportFrom))]
            found = {name for n in chosen for name, _ in _bound_names(n)}
            if not wanted <= found:
                raise BundleError(f"{module} defines no {sorted(wanted - found)}")
            used = {n.id for node in chosen for n in ast.walk(node) if isinstance(n, ast.Name)}
            for node in tree.body:   # the imports the chosen definitions use
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "module", "") == "__future__":
                    continue
                names = {name for name, _ in _bound_names(node)} & used
                if not names:
                    continue
                if _is_blalm_import(node):
                    missing = sorted(n for n in names if n not in bindings and n not in provided)
                    if missing:
                        raise BundleError(f"{path}:{node.lineno}: {missing} are imported from blalm but no "
                                          f"module bundled before {module} defines them")
                    needed_from_outside.update(n for n in names if n not in bindings)
                else:
                    chosen.insert(0, node)
            for node in sorted(chosen, key=lambda n: n.lineno):
                start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
                out.append("".join(lines[start - 1:node.end_lineno]) + "\n")
                _bind(bindings, node, module)
        else:
            replaced: dict[int, tuple[int, str]] = {}     # first line -> (last line, replacement)
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    replaced[node.lineno] = (node.end_lineno, "")
                elif _is_blalm_import(node):
                    aliases = []
                    for alias in node.names:
                        if alias.name not in bindings:
                            needed_from_outside.add(alias.name)
                        if alias.name not in bindings and alias.name not in provided:
                            raise BundleError(f"{path}:{node.lineno}: {alias.name} is imported from blalm but no "
                                              f"module bundled before {module} defines it")
                        if alias.asname and alias.asname != alias.name:
                            aliases.append(f"{alias.asname} = {alias.name}\n")
                    replaced[node.lineno] = (node.end_lineno, "".join(aliases))
                elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                          for t in node.targets):
                    replaced[node.lineno] = (node.end_lineno, "")
                else:
                    _bind(bindings, node, module)
            lineno = 1
            while lineno <= len(lines):
                if lineno in replaced:
                    end, text = replaced[lineno]
                    out.append(text)
                    lineno = end + 1
                else:
                    out.append(lines[lineno - 1])
                    lineno += 1
        parts.append("".join(out).rstrip("\n") + "\n\n\n")
    outside = sorted(name for name in needed_from_outside if name in provided and name not in bindings)
    imports = ""
    for target in sorted({provided[name] for name in outside}):
        names = [name for name in outside if provided[name] == target]
        imports += f"from .{target} import (  # noqa: F401\n" + "".join(f"    {n},\n" for n in names) + ")\n"
    text = header + "from __future__ import annotations\n\n" + imports + "\n" + "".join(parts).rstrip("\n") + "\n"
    compile(text, "<bundle>", "exec")    # a syntax error here is a bundler bug: fail at export, not at load
    return _Bundle(text=text, defined=set(bindings))


def _bind(bindings: dict[str, tuple[str, str]], node: ast.stmt, module: str) -> None:
    for name, what in _bound_names(node):
        previous = bindings.get(name)
        if previous is not None and previous[1] != module and (what == "def" or previous[0] != what):
            raise BundleError(f"cannot bundle: {name} is defined by both {previous[1]} and {module}; "
                              f"rename one of them")
        bindings[name] = (what, module)


def _header(filename: str, specs) -> str:
    from blalm import __version__

    modules = ", ".join(m.replace(".", "/") + ".py" for m, _ in specs)
    return (f"# {filename}: generated by blalm {__version__} ('blalm export') from {modules}.\n"
            f"# Self-contained: needs torch and transformers, not blalm. Do not edit: change blalm's\n"
            f"# sources and export again.\n")


def build_hf_sources() -> dict[str, str]:
    """``{"configuration_blalm.py": ..., "modeling_blalm.py": ...}`` generated from blalm's sources."""
    config = bundle_modules(CONFIG_BUNDLE, _header(f"{CONFIG_MODULE}.py", CONFIG_BUNDLE))
    modeling = bundle_modules(MODELING_BUNDLE, _header(f"{MODELING_MODULE}.py", MODELING_BUNDLE),
                              provided={name: CONFIG_MODULE for name in config.defined})
    return {f"{CONFIG_MODULE}.py": config.text, f"{MODELING_MODULE}.py": modeling.text}


# ----------------------------------------------------------------------------------------------
# export


def _is_hf_export(path: Path) -> bool:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == "blalm"
    except (OSError, ValueError, AttributeError):
        return False


def export_hf(checkpoint: str | Path, out_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write the model in the checkpoint folder ``checkpoint`` as a Hugging Face folder ``out_dir``
    (atomically; an existing ``out_dir`` is replaced only if empty or an earlier export).

    The tokenizer comes from ``tokenizer_dir`` or else from the checkpoint folder. Raises
    :class:`InputError` when ``checkpoint`` is not a model checkpoint, no tokenizer is found, or
    the tokenizer does not fit the model's vocabulary.
    """
    import transformers

    from blalm.tokenizer.train import load_tokenizer

    checkpoint = Path(checkpoint).expanduser()
    out_dir = Path(out_dir).expanduser()
    if not is_model_checkpoint(checkpoint):
        load_model(checkpoint)   # raises the InputError that names what is missing
    tok_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir is not None else checkpoint_tokenizer_dir(checkpoint)
    if tok_dir is None:
        raise InputError(f"{checkpoint}: the checkpoint holds no tokenizer; pass the tokenizer folder it was "
                         f"trained with (--tokenizer DIR)")
    tokenizer_files = _tokenizer_files(tok_dir)
    tokenizer = load_tokenizer(tok_dir)
    model = load_model(checkpoint)
    config = model.config
    if len(tokenizer) > config.vocab_size:
        raise InputError(f"{tok_dir}: the tokenizer has {len(tokenizer)} tokens but the model in {checkpoint} "
                         f"has vocab_size {config.vocab_size}; pass the tokenizer the model was trained with")
    if checkpoint.resolve() == out_dir.resolve():
        raise BlalmError(f"{out_dir}: the export would replace the checkpoint itself; choose another --out")
    _check_replaceable(out_dir, "Hugging Face export", _is_hf_export)

    fields = to_dict(config)
    if fields["mlstm_kernel"] not in BUNDLED_KERNELS:
        fields["mlstm_kernel"] = "chunkwise"
    dtypes = {t.dtype for t in model.state_dict().values() if t.is_floating_point()}
    dtype = str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32"
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    hf_config = {
        "architectures": [HF_MODEL_CLASS],
        "auto_map": {"AutoConfig": f"{CONFIG_MODULE}.{HF_CONFIG_CLASS}",
                     "AutoModelForCausalLM": f"{MODELING_MODULE}.{HF_MODEL_CLASS}"},
        "model_type": "blalm",
        **fields,
        **special,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": dtype,
        "transformers_version": transformers.__version__,
    }
    sources = build_hf_sources()
    state = {f"model.{name}": t.detach().contiguous() for name, t in model.state_dict().items()}

    with atomic_dir(out_dir) as tmp:
        write_safetensors(tmp / WEIGHTS_FILE, state, metadata={"format": "pt"})
        write_json_atomic(tmp / "config.json", hf_config)
        write_json_atomic(tmp / "generation_config.json", {**special, "transformers_version": transformers.__version__})
        for name, text in sources.items():
            (tmp / name).write_text(text, encoding="utf-8")
        for source in tokenizer_files:
            shutil.copyfile(source, tmp / source.name)
    return out_dir
