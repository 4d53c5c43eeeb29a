"""Load a model for inference and talk to it: the one loader chat, export, serve and predict share.

- :func:`load_model` -> :class:`Loaded` (tokenizer fixed up by the run's template exactly as
  training did, model with its adapters through peft, eval mode, on the GPU when there is one);
  callable from a worker thread; ``progress`` gets short phrases as it goes.
- :func:`format_chat` -> prompt ids from the *training* formatter
  (:meth:`Template.encode_oneturn`, the code that built the training data).
- :func:`generate_stream` yields text pieces as tokens are generated; a ``threading.Event``
  stops it at the next token. :func:`generate` answers a batch (left padding).

Imports torch: never import this module on the control path (``runner.infer.spec`` is safe).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunedeck.runner.data.templates import Template, get_template
from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.infer.spec import GenConfig, InferSpec

log = logging.getLogger("tunedeck.infer")

Progress = Callable[[str], None]
Message = Mapping[str, str]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ModelDoesNotFit(TunedeckError):
    """Loading needs more memory than the device has (the estimate's words, not a traceback)."""


@dataclass
class Loaded:
    """A model ready to generate. ``template`` is the run's, fixed up on ``tokenizer``."""

    spec: InferSpec
    tokenizer: Any
    model: Any
    template: Template
    device: torch.device
    dtype: torch.dtype
    stop_token_ids: list[int] = field(default_factory=list)
    # A lock per model: two chat panes may share one Loaded; generate calls take turns.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def label(self) -> str:
        return self.spec.label


def _noop(_: str) -> None:
    pass


def prepare_tokenizer(spec: InferSpec) -> tuple[Any, Template, list[str]]:
    """The tokenizer and template as the training data pipeline set them up.

    Same loader (``runner.train.model.load_tokenizer``), same ``get_template(...).with_options``
    and ``fix_special_tokens`` as :func:`tunedeck.runner.data.loader.load_data`. Returns the
    tokens added to the vocabulary (the embeddings must grow to match, as in training).
    """
    from tunedeck.runner.train.args import ModelPlan
    from tunedeck.runner.train.model import load_tokenizer

    plan = ModelPlan(
        model_name_or_path=spec.model_name_or_path,
        cache_dir=spec.cache_dir,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        use_fast_tokenizer=bool(spec.values.get("use_fast_tokenizer", True)),
    )
    try:
        tokenizer = load_tokenizer(plan)
    except OSError as exc:
        raise TunedeckError(f"cannot load the tokenizer of {spec.model_name_or_path}: {exc}",
                            hint="check model_name_or_path (and HF_HUB_OFFLINE for a hub id)") from exc
    template = get_template(spec.template, tokenizer).with_options(
        default_system=spec.default_system, enable_thinking=spec.enable_thinking
    )
    added = template.fix_special_tokens(tokenizer)
    return tokenizer, template, added


def pick_device(spec: InferSpec) -> torch.device:
    if spec.values.get("use_cpu") is True or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def pick_dtype(spec: InferSpec, device: torch.device, config: Any = None) -> torch.dtype:
    """``infer_dtype``; ``auto``: the checkpoint's dtype on a GPU (fp16 where bf16 is missing),
    float32 on the CPU (CPU half precision is slow and loses accuracy)."""
    if spec.infer_dtype in _DTYPES:
        return _DTYPES[spec.infer_dtype]
    if device.type == "cpu":
        return torch.float32
    saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(saved, str):
        saved = _DTYPES.get(saved)
    if saved == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float16
    return saved if isinstance(saved, torch.dtype) and saved != torch.float32 else torch.bfloat16


def fit_check(spec: InferSpec, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse before loading when the weights alone cannot fit (the estimate's arithmetic)."""
    from tunedeck.runner.estimate import format_bytes
    from tunedeck.runner.model_shape import resolve_shape

    try:
        shape = resolve_shape(spec.model_name_or_path)
    except Exception:  # an unknown shape is not a reason to refuse; loading will tell
        return
    need = shape.total_params * torch.finfo(dtype).bits // 8
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        where = f"GPU {device.index} has {format_bytes(free)} free"
    else:
        import psutil

        free = psutil.virtual_memory().available
        where = f"this machine has {format_bytes(free)} of RAM available"
    if need > free:
        raise ModelDoesNotFit(
            f"{spec.label}: the weights alone need {format_bytes(need)} "
            f"({shape.total_params / 1e9:.2f}B parameters in {str(dtype).removeprefix('torch.')}) "
            f"and {where}",
            hint="set infer_dtype: bfloat16 (or float16), free the GPU, or run on a larger one; "
            "`tunedeck estimate CONFIG` shows the numbers",
        )


def load_model(spec: InferSpec, progress: Progress = _noop) -> Loaded:
    """Tokenizer + model (+ adapters) for ``spec``, in eval mode. Safe to call from a thread."""
    if spec.infer_backend != "huggingface":
        raise TunedeckError(
            f"infer_backend {spec.infer_backend}: tunedeck chat and export load models with "
            "transformers only", hint="set infer_backend=huggingface (serving with vLLM is `tunedeck serve`)")
    from transformers import AutoConfig, AutoModelForCausalLM

    progress = _slowed(progress)
    device = pick_device(spec)
    try:
        config = AutoConfig.from_pretrained(spec.model_name_or_path, trust_remote_code=spec.trust_remote_code,
                                            revision=spec.revision, cache_dir=spec.cache_dir)
    except OSError as exc:
        raise TunedeckError(f"cannot read the model config of {spec.model_name_or_path}: {exc}") from exc
    dtype = pick_dtype(spec, device, config)
    fit_check(spec, device, dtype)  # before anything heavy: a model that cannot fit is said so
    progress(f"tokenizer of {spec.model_name_or_path}")
    tokenizer, template, added = prepare_tokenizer(spec)
    progress(f"weights of {spec.model_name_or_path} ({str(dtype).removeprefix('torch.')}, {device})")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            spec.model_name_or_path, config=config, dtype=dtype, trust_remote_code=spec.trust_remote_code,
            revision=spec.revision, cache_dir=spec.cache_dir, low_cpu_mem_usage=True,
        )
        if added and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
        model = apply_adapters(model, spec.adapters, progress)
        model.to(device)
    except torch.cuda.OutOfMemoryError as exc:
        from tunedeck.runner.estimate import format_bytes

        raise ModelDoesNotFit(f"{spec.label}: out of GPU memory while loading ({exc.args[0][:160] if exc.args else ''})",
                              hint="set infer_dtype: bfloat16, or use a GPU with more than "
                              f"{format_bytes(torch.cuda.get_device_properties(device).total_memory)}") from exc
    except MemoryError as exc:
        raise ModelDoesNotFit(f"{spec.label}: out of host memory while loading",
                              hint="set infer_dtype: bfloat16 (half the bytes) or free RAM") from exc
    model.eval()
    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    progress("ready")
    return Loaded(spec=spec, tokenizer=tokenizer, model=model, template=template, device=device,
                  dtype=dtype, stop_token_ids=stop_token_ids(tokenizer, template))


def apply_adapters(model: Any, adapters: Sequence[str], progress: Progress = _noop) -> Any:
    """Every adapter merged in order except the last, which stays a peft layer (LLaMA-Factory's
    ``init_adapter`` for inference); with one adapter nothing is merged."""
    if not adapters:
        return model
    from peft import PeftModel

    for i, path in enumerate(adapters):
        progress(f"adapter {Path(path).name} ({i + 1}/{len(adapters)})")
        if not Path(path).is_dir():
            raise TunedeckError(f"adapter {path} does not exist", hint="check adapter_name_or_path / --checkpoint")
        model = PeftModel.from_pretrained(model, path, is_trainable=False)
        if i < len(adapters) - 1:
            model = model.merge_and_unload()
    return model


def stop_token_ids(tokenizer: Any, template: Template) -> list[int]:
    """eos plus the template's stop words (LLaMA-Factory: eos + additional special tokens)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    for word in template.stop_words:
        tid = tokenizer.convert_tokens_to_ids(word)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def format_chat(target: Loaded | tuple[Any, Template], messages: Sequence[Message],
                system: str | None = None, tools: Any = None) -> list[int]:
    """Prompt ids for ``messages`` (alternating user/assistant, ending with a user turn),
    formatted by the training formatter with an empty answer opened, LLaMA-Factory's
    ``chat`` way: ``encode_oneturn(messages + [assistant: ""])``'s prompt."""
    tokenizer, template = (target.tokenizer, target.template) if isinstance(target, Loaded) else target
    if not messages or messages[-1].get("role") not in ("user", "observation"):
        raise TunedeckError("the conversation must end with a user message to answer")
    paired = [*({"role": m["role"], "content": m["content"]} for m in messages),
              {"role": "assistant", "content": ""}]
    prompt, _ = template.encode_oneturn(tokenizer, paired, system or None, tools or None)
    return prompt


# ---------------------------------------------------------------------------------------------
# generation

def _slowed(progress: Progress) -> Progress:
    """``TUNEDECK_FAULT=slowload@S``: each loading phase takes S seconds longer (TUI tests)."""
    from tunedeck.runner.train.faults import faults_from_env

    try:
        slow = faults_from_env().slow_load_seconds
    except ValueError:
        slow = 0.0
    if slow <= 0:
        return progress

    def report(msg: str) -> None:
        progress(msg)
        time.sleep(slow)

    return report


def _slow_token_seconds() -> float:
    """``TUNEDECK_FAULT=slowtoken@S``: sleep S seconds per generated token (tests watch streaming)."""
    from tunedeck.runner.train.faults import faults_from_env

    with contextlib.suppress(ValueError):
        return faults_from_env().slow_token_seconds
    return 0.0


class _StopOnEvent:
    """A transformers stopping criterion: true once ``event`` is set (checked every token)."""

    def __init__(self, event: threading.Event, slow: float = 0.0) -> None:
        self.event, self.slow = event, slow

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kw: Any) -> torch.Tensor:
        if self.slow > 0:
            self.event.wait(self.slow)
        done = self.event.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def _gen_kwargs(loaded: Loaded, gen: GenConfig, stop_event: threading.Event) -> dict[str, Any]:
    from transformers import StoppingCriteriaList

    kw = gen.to_generate_kwargs()
    kw["eos_token_id"] = loaded.stop_token_ids or None
    kw["pad_token_id"] = loaded.tokenizer.pad_token_id
    kw["stopping_criteria"] = StoppingCriteriaList([_StopOnEvent(stop_event, _slow_token_seconds())])
    return kw


def generate_stream(loaded: Loaded, ids: Sequence[int], gen: GenConfig | None = None,
                    stop_event: threading.Event | None = None) -> Iterator[str]:
    """Text pieces of the answer to prompt ``ids`` as they are generated.

    Generation runs in a thread; setting ``stop_event`` ends it at the next token (the pieces so
    far stay valid). Closing the iterator early also stops it. Errors in the thread re-raise here.
    """
    from transformers import TextIteratorStreamer

    gen = gen or loaded.spec.generation
    event = stop_event or threading.Event()
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, timeout=None,
                                    skip_special_tokens=gen.skip_special_tokens)
    kw = _gen_kwargs(loaded, gen, event)
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=loaded.device)
    error: list[BaseException] = []

    def work() -> None:
        try:
            with loaded.lock, torch.inference_mode():
                loaded.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      streamer=streamer, **kw)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            error.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, name="tunedeck-generate", daemon=True)
    thread.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        event.set()  # the consumer stopped reading: stop generating too
        thread.join()
    if error and not isinstance(error[0], KeyboardInterrupt):
        raise TunedeckError(f"generation failed: {error[0]}") from error[0]


def generate(loaded: Loaded, batch: Sequence[Sequence[int]], gen: GenConfig | None = None,
             stop_event: threading.Event | None = None) -> list[str]:
    """Answers to a batch of prompt ids, left-padded to one length (one ``generate`` call)."""
    gen = gen or loaded.spec.generation
    if not batch:
        return []
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    kw = _gen_kwargs(loaded, gen, stop_event or threading.Event())
    with loaded.lock, torch.inference_mode():
        out = loaded.model.generate(input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device), **kw)
    answers = out[:, width:].tolist()
    texts = []
    for row in answers:
        # cut at the first stop token (the rest of the row is padding after it)
        for j, t in enumerate(row):
            if t in loaded.stop_token_ids:
                row = row[:j]
                break
        texts.append(loaded.tokenizer.decode(row, skip_special_tokens=gen.skip_special_tokens))
    return texts


def seed_everything(seed: int | None) -> None:
    """Reproducible sampling for tests and predict (``seed`` of the config)."""
    if seed is None:
        return
    from transformers import set_seed

    set_seed(int(seed))


__all__ = [
    "Loaded", "ModelDoesNotFit", "apply_adapters", "format_chat", "generate", "generate_stream",
    "load_model", "pick_device", "pick_dtype", "prepare_tokenizer", "seed_everything", "stop_token_ids",
]
