"""Backbone benchmarks: training throughput and MFU (Lightning vs a plain PyTorch loop, same model and
batch, measured side by side), and generation speed with the KV cache vs recomputing the whole prefix.

    python benchmarks/bench_backbone.py [--preset small] [--steps 30] [--batch 32] [--seq 128]

Prints a table and writes benchmarks/results/backbone.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from anytoken.atomic import atomic_path
from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import LMHead

VOCAB = 512


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Measured fp32 matmul FLOP/s of this machine (the MFU denominator)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def make_model(config: TransformerConfig) -> tuple[CausalTransformer, LMHead]:
    torch.manual_seed(0)
    model = CausalTransformer(config)
    return model, LMHead(model)


def lm_loss(model: CausalTransformer, head: LMHead, ids: torch.Tensor) -> torch.Tensor:
    logits = head(model(ids[:, :-1]))  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def reference_loop(config: TransformerConfig, ids: torch.Tensor, steps: int, warmup: int) -> float:
    """Seconds per step of a plain PyTorch training loop."""
    model, head = make_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(warmup + steps):
        t = time.perf_counter()
        loss = lm_loss(model, head, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return sum(times[warmup:]) / steps


class _Module(L.LightningModule):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.model, self.head = make_model(config)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return lm_loss(self.model, self.head, batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args: object) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args: object) -> None:
        self.times.append(time.perf_counter() - self._t)


def lightning_loop(config: TransformerConfig, ids: torch.Tensor, steps: int, warmup: int) -> float:
    """Seconds per step of the same model through Lightning's Trainer (fp32, CPU)."""
    timer = _StepTimer()
    trainer = L.Trainer(
        max_steps=warmup + steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(
        [ids[i] for i in range(len(ids))] * (warmup + steps), batch_size=len(ids)
    )
    trainer.fit(_Module(config), loader)
    return sum(timer.times[warmup:]) / steps


@torch.no_grad()
def generation(config: TransformerConfig, batch: int, prompt: int, new: int) -> dict[str, float]:
    """Tokens/s generating ``new`` tokens greedily with the KV cache vs recomputing the prefix each step."""
    model, head = make_model(config)
    model.eval()
    ids = torch.randint(0, VOCAB, (batch, prompt))
    t = time.perf_counter()
    cache = model.init_kv_cache(batch, prompt + new)
    tok = head(model(ids, kv_cache=cache)[:, -1]).argmax(-1)
    for _ in range(new - 1):
        tok = head(model(tok[:, None], kv_cache=cache)[:, -1]).argmax(-1)
    cached = batch * new / (time.perf_counter() - t)
    t = time.perf_counter()
    seq = ids
    for _ in range(new):
        tok = head(model(seq)[:, -1]).argmax(-1)
        seq = torch.cat([seq, tok[:, None]], dim=1)
    full = batch * new / (time.perf_counter() - t)
    return {"kv_cache_tokens_per_s": cached, "recompute_tokens_per_s": full, "speedup": cached / full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs; each path's fastest counts")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "backbone.json"))
    args = parser.parse_args()
    config = TransformerConfig.from_name(args.preset, vocab_size=VOCAB, max_seq_len=max(args.seq + 1, 256))
    ids = torch.randint(0, VOCAB, (args.batch, args.seq + 1))
    flops_per_step = CausalTransformer(config).flops_per_token(args.seq) * args.batch * args.seq
    # the paths alternate, so drift in the machine's speed (other jobs, clocks) hits both alike
    peaks, refs, lits = [], [], []
    for _ in range(args.repeats):
        peaks.append(matmul_peak())
        refs.append(reference_loop(config, ids, args.steps, args.warmup))
        lits.append(lightning_loop(config, ids, args.steps, args.warmup))
    peak, ref, lit = max(peaks), min(refs), min(lits)
    rows = {}
    for name, sec in (("plain PyTorch loop", ref), ("Lightning Trainer", lit)):
        rows[name] = {
            "tokens_per_s": args.batch * args.seq / sec,
            "mfu": flops_per_step / sec / peak,
            "sec_per_step": sec,
        }
    gen = generation(config, batch=8, prompt=32, new=64)
    result = {
        "preset": args.preset,
        "batch": args.batch,
        "seq": args.seq,
        "threads": torch.get_num_threads(),
        "repeats": {"reference_s": refs, "lightning_s": lits, "peak_gflops": [p / 1e9 for p in peaks]},
        "params_non_embedding": CausalTransformer(config).num_parameters(),
        "matmul_peak_gflops": peak / 1e9,
        "training": rows,
        "lightning_over_reference": ref / lit,
        "generation": gen,
    }
    print(
        f"backbone preset={args.preset} batch={args.batch} seq={args.seq} "
        f"params={result['params_non_embedding'] / 1e6:.2f}M peak={peak / 1e9:.1f} GFLOP/s (fp32 matmul)"
    )
    print(f"{'path':<22}{'tokens/s':>12}{'MFU':>8}{'s/step':>9}")
    for name, r in rows.items():
        print(f"{name:<22}{r['tokens_per_s']:>12.0f}{r['mfu']:>8.1%}{r['sec_per_step']:>9.3f}")
    print(f"Lightning / reference throughput: {ref / lit:.3f}")
    print(
        f"generation (batch 8, prompt 32, 64 new): KV cache {gen['kv_cache_tokens_per_s']:.0f} tok/s, "
        f"recompute {gen['recompute_tokens_per_s']:.0f} tok/s, speedup {gen['speedup']:.1f}x"
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
