"""GPU path of the backbone at configs/anything_gpu.yaml's size (12 layers, d_model 768, 1,024 positions):
training tokens/s and MFU in fp32, TF32, bf16-mixed and bf16-mixed + ``torch.compile``, on plain causal
rows (SDPA may pick flash attention) and on packed rows (a block-diagonal mask: flash cannot take one), the
SDPA kernel each case can use, and KV-cache generation speed.

    python benchmarks/bench_gpu.py [--batch 16] [--steps 20]           # on a CUDA machine
    python benchmarks/bench_gpu.py --device cpu --preset tiny --seq 64  # a smoke run of the script

Prints a table and writes benchmarks/results/gpu.json. MFU is against the bf16 (or fp32) matmul rate
measured in the same run, not the datasheet's.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from anytoken.atomic import atomic_path
from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import LMHead
from anytoken.tokenizers.sequence import build_attention_mask

VOCAB = 4096  # about the anything_gpu TokenSpace's size
PRESETS = {
    "gpu": {"n_layer": 12, "n_head": 12, "d_model": 768},  # configs/anything_gpu.yaml's backbone
    "cpu": {"n_layer": 4, "n_head": 4, "d_model": 192},  # configs/anything_tiny.yaml's backbone
    "tiny": {"n_layer": 2, "n_head": 2, "d_model": 64},
}
MODES = {  # name -> (autocast dtype or None, allow TF32, compile)
    "fp32": (None, False, False),
    "fp32+compile": (None, False, True),
    "tf32": (None, True, False),
    "bf16-mixed": (torch.bfloat16, True, False),
    "bf16-mixed+compile": (torch.bfloat16, True, True),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, reps: int = 10) -> float:
    """Measured FLOP/s of an ``n``-cube matmul in ``dtype`` (the MFU denominator)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def packed_mask(batch: int, seq: int, docs: int, device: torch.device) -> torch.Tensor:
    """``[B, 1, T, T]``: each row packs ``docs`` samples of equal length (as a packed mixture batch does)."""
    sample_ids = (torch.arange(seq, device=device) * docs // seq + 1).expand(batch, seq)
    return build_attention_mask(sample_ids, torch.zeros_like(sample_ids))


def train_rate(
    config: TransformerConfig, mode: str, mask: torch.Tensor | None, batch: int, steps: int,
    device: torch.device,
) -> float:
    """Tokens/s of forward + backward + AdamW on random ids (the median step after warm-up)."""
    dtype, tf32, compiled = MODES[mode]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    model = CausalTransformer(config).to(device)
    head = LMHead(model)
    forward: Callable[..., torch.Tensor] = torch.compile(model.forward, dynamic=True) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ids = torch.randint(0, config.vocab_size, (batch, config.max_seq_len + 1), device=device)
    times = []
    for _ in range(steps + 3):
        sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = head(forward(ids[:, :-1], attn_mask=mask))
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t)
    torch.backends.cuda.matmul.allow_tf32 = False
    return batch * config.max_seq_len / sorted(times[3:])[len(times[3:]) // 2]


def sdpa_kernels(config: TransformerConfig, batch: int, device: torch.device) -> dict[str, dict[str, bool]]:
    """Which SDPA kernels accept the backbone's bf16 attention call, causal and packed."""
    hs, T = config.head_dim, config.max_seq_len
    q = torch.randn(batch, config.n_head, T, hs, device=device, dtype=torch.bfloat16)
    cases = {"causal": {"is_causal": True}, "packed": {"attn_mask": packed_mask(batch, T, 8, device)}}
    found: dict[str, dict[str, bool]] = {}
    for case, kwargs in cases.items():
        found[case] = {}
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                        SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel(backend):
                    F.scaled_dot_product_attention(q, q, q, **kwargs)
                found[case][backend.name.lower()] = True
            except RuntimeError:
                found[case][backend.name.lower()] = False
    return found


@torch.no_grad()
def generation_rate(config: TransformerConfig, batch: int, new: int, device: torch.device) -> float:
    """Tokens/s generating ``new`` tokens greedily with the KV cache after a 64-token prompt (bf16)."""
    config = replace(config, max_seq_len=max(config.max_seq_len, 64 + new))
    model = CausalTransformer(config).to(device=device, dtype=torch.bfloat16).eval()
    head = LMHead(model)
    ids = torch.randint(0, config.vocab_size, (batch, 64), device=device)
    cache = model.init_kv_cache(batch, 64 + new)
    sync(device)
    t = time.perf_counter()
    tok = head(model(ids, kv_cache=cache)[:, -1]).argmax(-1)
    for _ in range(new - 1):
        tok = head(model(tok[:, None], kv_cache=cache)[:, -1]).argmax(-1)
    sync(device)
    return batch * new / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device (use --device cpu for a smoke run)")
    config = TransformerConfig(**PRESETS[args.preset], vocab_size=VOCAB, max_seq_len=args.seq)
    reference = CausalTransformer(config)  # for the FLOP and parameter counts
    flops_per_token = reference.flops_per_token(args.seq)
    n = 8192 if device.type == "cuda" else 1024
    peaks = {"bf16": matmul_rate(device, torch.bfloat16, n), "fp32": matmul_rate(device, torch.float32, n)}
    rows = []
    for attention in ("causal", "packed"):
        mask = None if attention == "causal" else packed_mask(args.batch, args.seq, 8, device)
        for mode in args.modes:
            rate = train_rate(config, mode, mask, args.batch, args.steps, device)
            peak = peaks["bf16" if mode.startswith("bf16") else "fp32"]
            rows.append({"attention": attention, "mode": mode, "tokens_per_s": rate,
                         "mfu": rate * flops_per_token / peak})
    cpu = platform.processor() or platform.machine()
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu,
        "torch": torch.__version__,
        "config": {**PRESETS[args.preset], "seq": args.seq, "batch": args.batch, "vocab": VOCAB,
                   "parameters": reference.num_parameters()},
        "matmul_tflops": {k: v / 1e12 for k, v in peaks.items()},
        "train": rows,
        "sdpa_kernels": sdpa_kernels(config, args.batch, device) if device.type == "cuda" else {},
        "generation_tokens_per_s": {f"batch_{b}": generation_rate(config, b, 256, device) for b in (1, 16)},
    }
    print(f"{result['device']}, torch {result['torch']}; matmul TFLOP/s: "
          + ", ".join(f"{k} {v:.3g}" for k, v in result["matmul_tflops"].items()))
    print(f"{'attention':<10}{'mode':<22}{'tokens/s':>12}{'MFU':>8}")
    for r in rows:
        print(f"{r['attention']:<10}{r['mode']:<22}{r['tokens_per_s']:>12.0f}{r['mfu']:>8.1%}")
    print("SDPA kernels that accept the call:", result["sdpa_kernels"])
    generated = {k: round(v) for k, v in result["generation_tokens_per_s"].items()}
    print("KV-cache generation tokens/s:", generated)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
