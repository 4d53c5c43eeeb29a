""":func:`diagnose`: a table of detectors (:data:`DETECTORS`), each turning symptoms into one
diagnosis; pure, a :class:`TriageInput` in, diagnoses out, most important first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from tunedeck.runner.estimate import (
    format_bytes,
)
from tunedeck.runner.rundir.health import stall_check, step_times
from tunedeck.runner.triage.logtext import (
    ENOSPC_PATTERNS,
    KILLED_PATTERNS,
    NAN_PATTERNS,
    OOM_PATTERNS,
    _last_exception,
    _matches,
    _traceback_tail,
)
from tunedeck.runner.triage.model import (
    _KIND_ORDER,
    Diagnosis,
    TriageInput,
    _Ctx,
    _losses,
    _nonfinite,
    _total_steps,
)
from tunedeck.runner.triage.suggestions import (
    FLAT_MIN_POINTS,
    FLAT_WINDOW,
    _disk,
    _diverged,
    _not_converging,
    _oom,
    _slow,
)


def _status(ctx: _Ctx) -> str:
    return (ctx.inp.status or "").lower()


def _reason(ctx: _Ctx) -> str:
    return (ctx.inp.exit_reason or "").lower()


def _text(ctx: _Ctx) -> str:
    return ctx.tail + "\n" + ctx.exit


def _oom_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    inp = ctx.inp
    oom_line = _matches(_text(ctx), OOM_PATTERNS)
    if not (_status(ctx) == "oom" or _reason(ctx) == "oom" or oom_line):
        return None
    ev = []
    if oom_line:
        ev.append(f"log: {oom_line}")
    if _status(ctx) == "oom":
        ev.append("run status: oom")
    before = ctx.mem()
    if before is not None:
        gm = (f" on a {format_bytes(inp.gpu_mem_bytes)} GPU" if inp.gpu_mem_bytes else "")
        ev.append(f"estimated peak {format_bytes(before)} per GPU{gm}")
    return Diagnosis("oom", "CUDA ran out of memory", tuple(ev), tuple(_oom(ctx)))


def _disk_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    inp = ctx.inp
    reason = _reason(ctx)
    disk_line = _matches(_text(ctx), ENOSPC_PATTERNS)
    where = inp.disk_path or "the output_dir's filesystem"
    if disk_line or reason in ("disk_full", "enospc"):
        ev = [f"log: {disk_line}"] if disk_line else [f"trainer exit reason: {reason}"]
        if inp.disk_free_bytes is not None:
            ev.append(f"{format_bytes(inp.disk_free_bytes)} free on {where}")
        return Diagnosis("disk_full", f"the disk filled up ({where})", tuple(ev),
                         tuple(_disk(ctx, True)))
    if (inp.disk_free_bytes is not None and inp.checkpoint_bytes
            and inp.disk_free_bytes < 1.5 * inp.checkpoint_bytes
            and _status(ctx) not in ("finished",)):
        ev = [f"{format_bytes(inp.disk_free_bytes)} free on {where}",
              f"last checkpoint is {format_bytes(inp.checkpoint_bytes)}; the next save needs "
              f"about that much again (checked with a 1.5x margin)"]
        return Diagnosis("disk_low", f"the next checkpoint may not fit on {where}",
                         tuple(ev), tuple(_disk(ctx, False)))
    return None


def _diverged_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    inp = ctx.inp
    bad = [r for r in inp.history if _nonfinite(r.get("loss")) or _nonfinite(r.get("grad_norm"))]
    nan_line = _matches(_text(ctx), NAN_PATTERNS)
    if not (_status(ctx) == "diverged" or _reason(ctx) == "diverged" or bad or nan_line):
        return None
    ev = []
    if bad:
        first = bad[0]
        ev.append(f"loss {first.get('loss')} / grad_norm {first.get('grad_norm')} at step "
                  f"{first.get('current_steps', '?')}")
    if nan_line:
        ev.append(f"log: {nan_line}")
    if _status(ctx) == "diverged":
        ev.append("run status: diverged")
    gn = [float(r["grad_norm"]) for r in inp.history
          if isinstance(r.get("grad_norm"), (int, float)) and not _nonfinite(r["grad_norm"])]
    if len(gn) >= 3:
        ev.append(f"grad_norm median {statistics.median(gn):.3g}, max {max(gn):.3g}")
    return Diagnosis("diverged", "the loss became NaN/inf", tuple(ev), tuple(_diverged(ctx)))


def _killed_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    if _status(ctx) != "killed":
        return None
    kl = _matches(_text(ctx), KILLED_PATTERNS)
    ev = [f"log: {kl}"] if kl else []
    if ctx.inp.exit_message:
        ev.append(ctx.inp.exit_message)
    sugg = [ctx.suggest(
        "Check for the host's OOM killer",
        "A SIGKILL nobody sent is usually the kernel's OOM killer: host RAM ran out "
        "(`dmesg | grep -i kill`). Tokenisation workers and data-loader workers each hold "
        "a copy of the data; ZeRO offload needs host RAM too.",
        {"preprocessing_num_workers": 2} if ctx.int_("preprocessing_num_workers", 0) > 2
        else {}, "10.6", memory=False)]
    return Diagnosis("killed", "the trainer was killed by a signal", tuple(ev), tuple(sugg))


def _failed_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    """A failure nothing more specific explains."""
    if found or _status(ctx) == "killed":
        return None
    if not (_status(ctx) in ("failed", "lost") or _reason(ctx) in ("error", "config_error")):
        return None
    inp = ctx.inp
    msg = inp.exit_message or _last_exception(inp.log_tail) or "no message"
    return Diagnosis(
        "failed", f"the run failed: {msg}",
        tuple(_traceback_tail(inp.log_tail)),
        (ctx.suggest("Validate the config",
                     "Many failures are config problems LLaMA-Factory reports only at "
                     "start-up: `tunedeck validate` lists them all with file:line.",
                     {}, "10.6", memory=False),))


def _not_converging_unless_diverged(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    if any(d.kind == "diverged" for d in found):
        return None
    return _not_converging_diag(ctx)


def _healthy(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    if any(d.kind != "resume_past_end" for d in found):
        return None
    ev = []
    losses = _losses(ctx.inp.history)
    if losses:
        ev.append(f"step {losses[-1][0]}: loss {losses[-1][1]:.4g}")
    if ctx.inp.status:
        ev.append(f"status: {ctx.inp.status}")
    return Diagnosis("healthy", "no problem found", tuple(ev), ())


# The detectors, in the order they look (each sees what the earlier ones found); the
# result is then sorted by _KIND_ORDER, most important first.
DETECTORS: tuple[Callable[[_Ctx, Sequence[Diagnosis]], Diagnosis | None], ...] = (
    _oom_diag,
    _disk_diag,
    _diverged_diag,
    _killed_diag,
    _failed_diag,
    lambda ctx, found: _resume_past_end(ctx),
    lambda ctx, found: _stalled(ctx),
    lambda ctx, found: _slow_diag(ctx),
    _not_converging_unless_diverged,
    _healthy,
)


def diagnose(inp: TriageInput) -> list[Diagnosis]:
    """Every problem found, most important first; ``healthy`` when there is none."""
    ctx = _Ctx(inp)
    found: list[Diagnosis] = []
    for detect in DETECTORS:
        d = detect(ctx, found)
        if d is not None:
            found.append(d)
    found.sort(key=lambda d: _KIND_ORDER.index(d.kind))
    return found


def _resume_past_end(ctx: _Ctx) -> Diagnosis | None:
    from tunedeck.runner.rundir.health import resume_end

    inp = ctx.inp
    if inp.checkpoint_step is None or (inp.status or "") in ("running", "starting", "stopping"):
        return None
    end = resume_end(inp.checkpoint_step, inp.checkpoint_epoch, ctx.v, _total_steps(ctx))
    if end is None:
        return None
    ck = end.checkpoint_step
    if end.key == "max_steps":
        max_steps = ctx.int_("max_steps", -1)
        return Diagnosis(
            "resume_past_end",
            f"a resume would do nothing: {end.message}",
            (f"checkpoint step {ck} >= max_steps {max_steps}",),
            (ctx.suggest(f"Raise max_steps above {ck}",
                         f"The trainer restores global_step {ck}, finds max_steps {max_steps} "
                         "reached and trains 0 steps. Raise max_steps (the patch adds another "
                         f"{max_steps} steps).",
                         end.patch, "10.3 resume", memory=False),))
    epochs = ctx.num("num_train_epochs", 3.0)
    total = _total_steps(ctx)
    ev = []
    if total:
        ev.append(f"checkpoint step {ck} >= total steps {total}")
    if inp.checkpoint_epoch is not None:
        ev.append(f"checkpoint epoch {inp.checkpoint_epoch:g} of num_train_epochs {epochs:g}")
    return Diagnosis(
        "resume_past_end",
        f"a resume would do nothing: {end.message}",
        tuple(ev),
        (ctx.suggest(f"Raise num_train_epochs above {epochs:g}",
                     "The trainer restores the epoch counter and finds no epoch left, so "
                     "it skips straight to the end (LLaMA-Factory issues #2776/#7085). "
                     "Raise num_train_epochs; the learning-rate schedule is recomputed "
                     "over the new total.",
                     end.patch, "10.3 resume", memory=False),))


def _stalled(ctx: _Ctx) -> Diagnosis | None:
    inp = ctx.inp
    status = inp.status
    if inp.last_log_age_s is None:
        return None
    if status is not None and status not in ("running", "starting"):
        return None
    if status is None:
        # No manifest (a LLaMA-Factory run): only a run that has not reached its end.
        last = inp.history[-1] if inp.history else {}
        cur, tot = last.get("current_steps"), last.get("total_steps")
        if not (isinstance(cur, (int, float)) and isinstance(tot, (int, float)) and cur < tot):
            return None
    stall = stall_check(inp.history, inp.last_log_age_s)  # THE stall rule (rundir.health)
    if stall is None or not stall.stalled:
        return None
    ev = [stall.describe()]
    if inp.gpu_util_pct is not None:
        ev.append(f"GPU utilisation now {inp.gpu_util_pct:.0f}%")
    if status is None:
        ev.append("no tunedeck manifest: the process may also have died without a trace")
    sugg = [ctx.suggest(
        "See where it is stuck",
        "Dump the trainer's Python stacks with `py-spy dump --pid <trainer pid>` (tunedeck "
        "status shows the pid). A data-loader worker deadlock, a hung NCCL collective "
        "(other ranks crashed) and a full disk are the usual causes.",
        {}, "10.6", memory=False)]
    if ctx.int_("dataloader_num_workers", 0) > 0:
        sugg.append(ctx.suggest(
            "Load data in the main process",
            "If the stack shows the main process waiting on a worker queue, "
            "dataloader_num_workers 0 rules out a worker deadlock (at some cost in speed).",
            {"dataloader_num_workers": 0}, "10.6 slow step 1", memory=False))
    if inp.num_gpus > 1 and ctx.int_("ddp_timeout", 1800) > 7200:
        sugg.append(ctx.suggest(
            "A shorter ddp_timeout while diagnosing",
            f"A hung collective waits ddp_timeout ({ctx.int_('ddp_timeout', 1800)} s) before "
            "it fails; 3600 s turns a silent hang into an error with a stack trace. (Guide "
            "4.3 raises it so long preprocessing does not time out: restore it afterwards.)",
            {"ddp_timeout": 3600}, "4.3 ddp_timeout", memory=False))
    return Diagnosis("stalled", "training stopped making progress", tuple(ev), tuple(sugg))


def _slow_diag(ctx: _Ctx) -> Diagnosis | None:
    inp = ctx.inp
    ev: list[str] = []
    st = step_times(inp.history)
    if len(st) >= 8:
        q = max(2, len(st) // 4)
        early, late = statistics.median(st[:q]), statistics.median(st[-q:])
        if late > 2 * early:
            ev.append(f"steps slowed down: median {early:.2f} s/step early, {late:.2f} s/step "
                      "recently (memory creep or throttling)")
    if inp.gpu_util_pct is not None and inp.gpu_util_pct < 50 and (inp.status or "") == "running":
        ev.append(f"GPU utilisation {inp.gpu_util_pct:.0f}%: the GPUs wait on something")
    mfu = _mfu(ctx)
    if mfu is not None and mfu[0] < LOW_MFU:
        ev.append(mfu[1])
    if not ev:
        return None
    return Diagnosis("slow", "training is slower than it should be", tuple(ev),
                     tuple(_slow(ctx)))


# Dense bf16/fp16 tensor-core peaks (TFLOP/s, no sparsity), matched on the NVML name.
# Most specific names first.
GPU_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0), ("H20", 148.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("A6000", 155.0), ("A40", 150.0), ("A10", 125.0),
    ("4090", 165.0), ("4080", 97.0), ("3090", 71.0), ("V100", 125.0), ("T4", 65.0),
)


LOW_MFU = 0.10   # well-tuned fine-tuning runs reach 0.3-0.5 of peak


def gpu_peak_flops(name: str | None) -> float | None:
    if not name:
        return None
    for key, tflops in GPU_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def _mfu(ctx: _Ctx) -> tuple[float, str] | None:
    """(model FLOPs utilisation, sentence) from the logged throughput, if it can be known."""
    inp = ctx.inp
    peak = gpu_peak_flops(inp.gpu_name)
    if peak is None or (inp.status or "") != "running":
        return None
    tput = next((r["throughput"] for r in reversed(inp.history)
                 if isinstance(r.get("throughput"), (int, float)) and r["throughput"] > 0), None)
    est = ctx.estimate()
    if tput is None or est is None:
        return None
    n = est.shape.total_params
    # 6N per token for a full step; frozen weights need no weight gradient (~2N less);
    # gradient checkpointing recomputes the forward (+2N).
    per_token = 6 * n if est.trainable_params >= 0.5 * n else 4 * n
    if any(c.name == "activations" and c.note.startswith("gradient checkpointing")
           for c in est.components):
        per_token += 2 * n
    mfu = tput * per_token / (peak * max(1, inp.num_gpus))
    return mfu, (f"{tput:,.0f} tokens/s is {100 * mfu:.1f}% of the {inp.gpu_name} bf16 peak "
                 f"(x{max(1, inp.num_gpus)}); well-tuned runs reach 30-50%")


def _not_converging_diag(ctx: _Ctx) -> Diagnosis | None:
    losses = [x for _, x in _losses(ctx.inp.history) if math.isfinite(x)]
    if len(losses) < FLAT_MIN_POINTS:
        return None
    window = losses[-FLAT_WINDOW:]
    half = len(window) // 2
    first, second = statistics.mean(window[:half]), statistics.mean(window[half:])
    start = statistics.mean(losses[: max(2, len(losses) // 10)])
    rising = second > first * 1.05
    flat = abs(second - first) <= 0.01 * max(abs(first), 1e-9) and min(window) >= 0.95 * start
    if not (rising or flat):
        return None
    how = "rising" if rising else "flat"
    ev = (f"loss over the last {len(window)} logs: {first:.4g} -> {second:.4g} ({how})",
          f"loss at the start {start:.4g}")
    return Diagnosis("not_converging", f"the loss is {how}", ev, tuple(_not_converging(ctx)))
