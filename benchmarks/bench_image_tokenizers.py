"""Image tokenizers side by side: VQ vs FSQ (and, optionally, vector-quantize-pytorch's VQ).

Each tokenizer is trained from scratch for ``--steps`` batches on scenes + real photo tiles (64x64, 8x8 = 64
tokens per image), then evaluated on held-out photo tiles (photos never seen in training) and on the
scenes validation split: PSNR, SSIM, codebook usage (fraction of codes used at least once over both
sets) and perplexity. Usage is measured twice: on ``--num-val`` images per source (64: 8,192 tokens, a
third of them black scene patches, too few to see every one of 1024 codes) and on ``--usage-val`` images
per source (1024: 131,072 tokens; the held-out photos cut into more tiles of random side and position,
more validation scenes; a superset of the first set). Then encode/decode throughput at 64x64 (f=8) and
256x256 (f=16), and the cost of encoding one image against one training step of the text-to-image
backbone on that image.

    python benchmarks/bench_image_tokenizers.py --threads 1 --seeds 0 1   # about 25 minutes on one thread
    python benchmarks/bench_image_tokenizers.py --vqp   # + vector-quantize-pytorch, if importable

They measure the quantizers at an equal, small training budget, not converged tokenizers
(``anytoken fit --config configs/vq_image_scenes.yaml``).

Prints a table and writes benchmarks/results/image_tokenizers.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.atomic import atomic_path
from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.tasks.data.images_folder import ImageDataModule
from anytoken.tasks.module import WarmupCosine
from anytoken.tokenizers.image_vq import ImageVQTokenizer
from anytoken.tokenizers.quantizers import QuantizerOutput, usage_and_perplexity

BASE = dict(
    image_size=64, downsample=8, channels=32, encoder_channels=32, channel_mult=[1, 2, 2], l2_weight=1.0
)
VQ = dict(quantizer="vq", codebook_size=1024, vq_dead_threshold=0.5)
VARIANTS: dict[str, dict[str, Any]] = {
    "vq": VQ | dict(latent_dim=4, vq_normalize=True),  # the shipped setting (configs/vq_image_scenes.yaml)
    "fsq": dict(quantizer="fsq", fsq_levels=[8, 5, 5, 5], fsq_entropy_weight=0.01),
    "vq_dim8": VQ | dict(latent_dim=8, vq_normalize=False),  # the previous setting: Euclidean codes
    "vq_dim8_cosine": VQ | dict(latent_dim=8, vq_normalize=True),
}


class VQPytorchAdapter(nn.Module):
    """vector-quantize-pytorch's ``VectorQuantize`` (EMA, k-means init, dead-code restarts) as a quantizer."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.dim, self.codebook_size = dim, codebook_size
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            decay=0.99,
            kmeans_init=True,
            threshold_ema_dead_code=0.5,
            commitment_weight=0.25,
        )

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        shape = z.shape
        quantized, indices, loss = self.vq(z.reshape(shape[0], -1, self.dim))
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).float()[None]
        return QuantizerOutput(quantized.view(shape), indices.view(shape[:-1]), loss.sum(), counts)


def build(name: str, seed: int = 0) -> ImageVQTokenizer:
    torch.manual_seed(seed)
    if name == "vqp":
        tok = ImageVQTokenizer(**BASE, **VARIANTS["vq_dim8"])
        tok.quantizer = VQPytorchAdapter(8, 1024)
        return tok
    return ImageVQTokenizer(**BASE, **VARIANTS[name])


def train(tok: ImageVQTokenizer, data: ImageDataModule, steps: int, lr: float) -> float:
    """Train for ``steps`` batches; returns seconds taken."""
    opt = torch.optim.AdamW(tok.parameters(), lr=lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(50, steps))
    tok.train()
    start = time.perf_counter()
    batches = iter(data.train_dataloader())
    for _ in range(steps):
        out = tok.loss(next(batches))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
        sched.step()
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(tok: ImageVQTokenizer, data: ImageDataModule) -> dict[str, float]:
    tok.eval()
    result: dict[str, float] = {}
    total = torch.zeros(1, tok.vocab_size)
    for name, loader in zip(data.val_names, data.val_dataloader()):
        psnr, ssim, n = 0.0, 0.0, 0
        counts = torch.zeros(1, tok.vocab_size)
        for x in loader:
            recon, q = tok(x)
            metrics = tok.reconstruction_metrics(x, recon)
            psnr, ssim, n = (
                psnr + float(metrics["psnr"]) * len(x),
                ssim + float(metrics["ssim"]) * len(x),
                n + len(x),
            )
            counts += q.counts
        total += counts
        result[f"{name}_psnr"], result[f"{name}_ssim"] = psnr / n, ssim / n
        result[f"{name}_usage"] = float(usage_and_perplexity(counts)[0])
    usage, perplexity = usage_and_perplexity(total)
    return result | {"codebook_usage": float(usage), "perplexity": float(perplexity)}


def run_variant(
    name: str, seed: int, data: ImageDataModule, large: ImageDataModule, steps: int, lr: float
) -> dict[str, float]:
    """Train variant ``name`` from initialisation ``seed``; its metrics on both validation sets."""
    tok = build(name, seed)
    seconds = train(tok, data, steps, lr)
    large_metrics = {f"large_{key}": value for key, value in evaluate(tok, large).items()}
    extra = {"train_s": seconds, "codebook_size": tok.vocab_size, "tokens_per_image": 64}
    return evaluate(tok, data) | large_metrics | extra


def throughput(image_size: int, downsample: int, batch: int, repeats: int = 3) -> dict[str, float]:
    """Images/s of encode and decode (best of ``repeats``)."""
    mult = [1, 2, 2] if downsample == 8 else [1, 1, 2, 2]
    tok = ImageVQTokenizer(
        **{**BASE, "image_size": image_size, "downsample": downsample, "channel_mult": mult}
    ).eval()
    x = torch.rand(batch, 3, image_size, image_size)
    ids = tok.encode(x)
    enc = min(_time(lambda: tok.encode(x)) for _ in range(repeats))
    dec = min(_time(lambda: tok.decode(ids)) for _ in range(repeats))
    return {
        "encode_images_per_s": batch / enc,
        "decode_images_per_s": batch / dec,
        "tokens_per_image": ids[0].numel(),
    }


def encode_vs_backbone_step(batch: int = 16) -> dict[str, float]:
    """Seconds per image: encoding (64x64) against one backbone training step (T2I config, 96 tokens)."""
    tok = ImageVQTokenizer(**BASE).eval()
    model = CausalTransformer(
        TransformerConfig(vocab_size=1536, n_layer=4, n_head=4, d_model=256, max_seq_len=128)
    )
    head = nn.Linear(256, 1536, bias=False)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()])
    x, ids = torch.rand(batch, 3, 64, 64), torch.randint(0, 1536, (batch, 96))

    def step() -> None:
        loss = F.cross_entropy(head(model(ids[:, :-1])).flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    enc = min(_time(lambda: tok.encode(x)) for _ in range(3)) / batch
    train_step = min(_time(step) for _ in range(3)) / batch
    return {"encode_s_per_image": enc, "backbone_step_s_per_image": train_step, "ratio": enc / train_step}


def print_table(table: dict[str, dict[str, float]]) -> None:
    """One line of reconstruction and usage metrics per trained tokenizer (or seed, or mean of seeds)."""
    print(
        f"\n{'tokenizer':<13}{'codes':>6}{'tok/img':>8}{'photos PSNR':>13}{'SSIM':>7}{'scenes PSNR':>13}"
        f"{'SSIM':>7}{'usage':>8}{'photos':>8}{'scenes':>8}{'perplexity':>12}{'large set usage':>17}"
    )
    for name, r in table.items():
        print(
            f"{name:<13}{r['codebook_size']:>6.0f}{r['tokens_per_image']:>8.0f}{r['photos_psnr']:>13.2f}"
            f"{r['photos_ssim']:>7.3f}{r['scenes_psnr']:>13.2f}{r['scenes_ssim']:>7.3f}{r['codebook_usage']:>8.1%}"
            f"{r['photos_usage']:>8.1%}{r['scenes_usage']:>8.1%}{r['perplexity']:>12.0f}"
            f"{r['large_codebook_usage']:>17.1%}"
        )


def _time(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training batches per tokenizer")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--num-val", type=int, default=64, help="validation images per source")
    parser.add_argument("--usage-val", type=int, default=1024, help="images per source, larger usage set")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--vqp", action="store_true", help="also train vector-quantize-pytorch's VQ")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisations per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/image_tokenizers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = ImageDataModule(
        sources=["scenes", "photos"],
        image_size=64,
        num_train=args.steps * args.batch_size,
        num_val=args.num_val,
        batch_size=args.batch_size,
    )
    large = ImageDataModule(sources=["scenes", "photos"], image_size=64, num_train=1, num_val=args.usage_val)
    rows: dict[str, dict[str, Any]] = {}
    table: dict[str, dict[str, float]] = {}
    for name in args.variants + (["vqp"] if args.vqp else []):
        runs = {seed: run_variant(name, seed, data, large, args.steps, args.lr) for seed in args.seeds}
        for seed, run in runs.items():
            print(
                f"{name} seed {seed}: trained {args.steps} steps in {run['train_s']:.0f} s: {run}", flush=True
            )
            table[f"{name} s{seed}" if len(runs) > 1 else name] = run
        mean = {key: sum(run[key] for run in runs.values()) / len(runs) for key in runs[args.seeds[0]]}
        rows[name] = mean | {"seeds": runs}
        if len(runs) > 1:
            table[f"{name} mean"] = mean
    speed = {"64px_f8": throughput(64, 8, 32), "256px_f16": throughput(256, 16, 4)}
    cost = encode_vs_backbone_step()
    print_table(table)
    for key, s in speed.items():
        print(
            f"{key}: {s['tokens_per_image']} tokens, encode {s['encode_images_per_s']:.0f} images/s, "
            f"decode {s['decode_images_per_s']:.0f} images/s"
        )
    print(
        f"encode {cost['encode_s_per_image'] * 1e3:.2f} ms/image vs backbone step "
        f"{cost['backbone_step_s_per_image'] * 1e3:.2f} ms/image: ratio {cost['ratio']:.3f}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "reconstruction": rows,
                    "throughput": speed,
                    "encode_vs_backbone_step": cost,
                },
                indent=2,
            )
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
