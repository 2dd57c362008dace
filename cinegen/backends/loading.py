"""`load_backend(model)`: a native cinegen directory, a diffusers directory or a hub id → a Backend.

- native: `config.json` + `model.safetensors` (the cinegen schema, `cinegen.backends.native`)
- diffusers: `model_index.json` whose `_class_name` is a supported pipeline; the components
  (transformer, VAE, scheduler config, text encoder, tokenizer) load with diffusers/transformers
- hub id (`org/name`, where the user has network): downloaded to the Hugging Face cache first
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cinegen.backends.diffusers_common import Options
from cinegen.config import SamplingDefaults
from cinegen.errors import UserError

# model_index `_class_name` → (family, backend module, class)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "WanPipeline": ("wan", "cinegen.backends.wan", "WanBackend"),
    "WanImageToVideoPipeline": ("wan", "cinegen.backends.wan", "WanBackend"),
    "LTXPipeline": ("ltx", "cinegen.backends.ltx", "LTXBackend"),
    "LTXImageToVideoPipeline": ("ltx", "cinegen.backends.ltx", "LTXBackend"),
    "LTXConditionPipeline": ("ltx", "cinegen.backends.ltx", "LTXBackend"),
    "CogVideoXPipeline": ("cogvideox", "cinegen.backends.cogvideox", "CogVideoXBackend"),
    "CogVideoXImageToVideoPipeline": ("cogvideox", "cinegen.backends.cogvideox", "CogVideoXBackend"),
}
# Video pipelines cinegen recognises but does not run (other conditioning: reference videos, poses).
NOT_YET = {
    "WanVACEPipeline",
    "WanAnimatePipeline",
    "CogVideoXVideoToVideoPipeline",
}
NEEDED = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")

# Defaults a user of each family expects (their pipelines' call defaults, at sizes a laptop can try).
FAMILY_DEFAULTS = {
    "wan": SamplingDefaults(steps=50, guidance=5.0, width=832, height=480, fps=16.0, seconds=5.0),
    "ltx": SamplingDefaults(steps=50, guidance=3.0, width=704, height=480, fps=25.0, seconds=6.4),
    "cogvideox": SamplingDefaults(steps=50, guidance=6.0, width=720, height=480, fps=8.0, seconds=6.0),
}


def model_kind(path: Path) -> str:
    """'native', 'diffusers' or '' for a local directory."""
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return "native"
    return ""


def read_model_index(path: Path) -> dict:
    try:
        index = json.loads((path / "model_index.json").read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{str(path / 'model_index.json')!r} is not valid JSON ({e})") from None
    class_name = index.get("_class_name")
    if class_name in NOT_YET:
        raise UserError(
            f"{str(path)!r} is a {class_name}, which cinegen does not run yet; supported: "
            f"{', '.join(sorted(FAMILIES))}"
        )
    if class_name not in FAMILIES:
        raise UserError(
            f"{str(path)!r} holds a {class_name!r}, not a supported video model; supported: "
            f"{', '.join(sorted(FAMILIES))}"
        )
    missing = [c for c in NEEDED if index.get(c) is None or not (path / c).is_dir()]
    if missing:
        raise UserError(f"{str(path)!r} ({class_name}) is missing its {', '.join(missing)} folder(s)")
    return index


def resolve_model_path(model: str | Path) -> Path:
    """A local directory as it is; otherwise `org/name` from the hub (needs network once)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    text = str(model)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(text))
        except Exception as e:  # offline, unknown repo, gated: one line for the user
            raise UserError(
                f"model {text!r} is not a local directory and could not be fetched from the hub "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
            ) from None
    raise UserError(
        f"model {text!r} does not exist (give a cinegen or diffusers model directory, or a hub id org/name)"
    )


def load_backend(
    model: str | Path,
    device: torch.device | str,
    dtype: torch.dtype,
    offload: bool = False,
    options: Options | None = None,
):
    """Load any supported model as a Backend on `device` with denoiser dtype `dtype`."""
    path = resolve_model_path(model)
    kind = model_kind(path)
    device = torch.device(device)
    if kind == "native":
        from cinegen.backends.native import NativeBackend

        return NativeBackend.load(path, device, dtype)
    if kind != "diffusers":
        raise UserError(
            f"{str(path)!r} is not a model directory: it needs model_index.json (diffusers) or "
            "config.json + model.safetensors (cinegen)"
        )
    index = read_model_index(path)
    family, module_name, class_name = FAMILIES[index["_class_name"]]
    options = options or Options()
    options.offload = options.offload or offload
    try:
        from diffusers import DiffusionPipeline
    except ModuleNotFoundError:
        raise UserError("open-weight models need diffusers: pip install 'cinegen[open-models]'") from None
    try:
        # Wan's VAE and CLIP image encoder stay fp32 (as its model cards load them); diffusers keeps
        # each model's `_keep_in_fp32_modules` in fp32 too.
        torch_dtype = dtype
        if family == "wan":
            torch_dtype = {"default": dtype, "vae": torch.float32, "image_encoder": torch.float32}
        pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"could not load {str(path)!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    components = dict(pipe.components)
    config = {k: v for k, v in pipe.config.items() if not k.startswith("_")}
    module = __import__(module_name, fromlist=[class_name])
    backend_cls = getattr(module, class_name)
    return backend_cls(
        components,
        path.name,
        device,
        dtype,
        options,
        FAMILY_DEFAULTS[family],
        pipeline_config=config,
        cast=False,
    )
