"""Image quantizers side by side at an equal training budget: VQ vs FSQ (and, optionally,
vector-quantize-pytorch's VQ). Each variant is trained from scratch for ``--steps`` batches on scenes + real
photo tiles (64x64, 8x8 = 64 tokens per image) and saved with ``save_pretrained`` to ``--out-dir/NAME``; then
``anytoken bench`` measures them (PSNR, SSIM, codebook usage and perplexity, throughput, JPEG/WebP at the
same bits per pixel) on held-out media, e.g. the photo tiles of ``benchmarks/bench_media.py``. Also the cost
of encoding one image against one training step of the text-to-image backbone on that image.

    python benchmarks/bench_image_tokenizers.py --threads 1 --seeds 0 1 --out-dir runs/quantizers
    python benchmarks/bench_image_tokenizers.py --vqp   # + vector-quantize-pytorch, if importable
    anytoken bench --tokenizer runs/quantizers/vq --tokenizer runs/quantizers/fsq /tmp/bench_media/photo_tiles

They compare the quantizers at a small budget, not converged tokenizers
(``anytoken fit --config configs/vq_image_scenes.yaml``).
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
from anytoken.tokenizers.quantizers import QuantizerOutput

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


def _time(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training batches per tokenizer")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--vqp", action="store_true", help="also train vector-quantize-pytorch's VQ")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisations per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, required=True, help="the variants are saved in NAME[-sSEED]")
    parser.add_argument("--out", default="benchmarks/results/image_tokenizers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = ImageDataModule(
        sources=["scenes", "photos"], image_size=64, num_train=args.steps * args.batch_size, num_val=1,
        batch_size=args.batch_size,
    )
    trained: dict[str, Any] = {}
    for name in args.variants + (["vqp"] if args.vqp else []):
        for seed in args.seeds:
            tok = build(name, seed)
            seconds = train(tok, data, args.steps, args.lr)
            folder = args.out_dir / (f"{name}-s{seed}" if len(args.seeds) > 1 else name)
            if name != "vqp":  # vector-quantize-pytorch's quantizer is not a registered anytoken class
                tok.save_pretrained(folder)
            trained[folder.name] = {"train_s": seconds, "steps": args.steps, "saved": name != "vqp"}
            print(f"{name} seed {seed}: {args.steps} steps in {seconds:.0f} s -> {folder}", flush=True)
    cost = encode_vs_backbone_step()
    print(
        f"encode {cost['encode_s_per_image'] * 1e3:.2f} ms/image vs backbone step "
        f"{cost['backbone_step_s_per_image'] * 1e3:.2f} ms/image: ratio {cost['ratio']:.3f}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        results = {"args": vars(args) | {"out_dir": str(args.out_dir)}, "trained": trained,
                   "encode_vs_backbone_step": cost}
        Path(tmp).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}; measure the variants with anytoken bench --tokenizer {args.out_dir}/NAME MEDIA")


if __name__ == "__main__":
    main()
