"""Text-to-image: ``<bos> <text> caption </text> <draw> <image> VQ ids </image>``, decoded to pictures.

Generation is the shared ``generate_segment``: constrained to the image range by the image tokenizer's
grammar (exactly ``h * w`` ids, then ``</image>``), so every output decodes. Classifier-free guidance:
training drops the caption with probability ``cond_dropout`` (``<bos> <draw> <image> ...``), and
``DecodingConfig.guidance_scale > 1`` contrasts the two prompts at every step.

Evaluation on scenes judges each generated image with ``judge_scene``, a deterministic reader of
single-object scenes (colour from the pixels, shape from the fill and the top/bottom mass, size from the
extent, cell from the centre), and reports the fraction matching the prompt per attribute and for all
four (``match_all``). The judge is checked on rendered scenes (100%) and on VQ reconstructions in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.atomic import atomic_path
from anytoken.heads import DecodingConfig
from anytoken.tasks.data.scenes import COLORS, POSITIONS
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.sequence import Segment, Special, Tokens

EVAL_SPLITS = ("test", "heldout")
ATTRIBUTES = ("color", "shape", "size", "cell")
_PALETTE = torch.tensor(list(COLORS.values()), dtype=torch.float32) / 255  # (8, 3)


def judge_scene(image: torch.Tensor, threshold: float = 0.3) -> dict[str, str] | None:
    """Read the one object of a scene image ``[3, S, S]`` in ``[0, 1]`` (black background).

    Returns:
        ``{"color", "shape", "size", "cell"}``, or None when no object is visible.
    """
    S = image.shape[-1]
    fg = image.amax(0) > threshold  # (S, S)
    if int(fg.sum()) < 4:
        return None
    ys, xs = fg.nonzero(as_tuple=True)
    y0, y1 = int(ys.float().quantile(0.01)), int(ys.float().quantile(0.99))
    x0, x1 = int(xs.float().quantile(0.01)), int(xs.float().quantile(0.99))
    box = fg[y0 : y1 + 1, x0 : x1 + 1].float()
    h, w = box.shape
    fill = float(box.mean())
    top, bottom = float(box[: h // 2].sum()), float(box[h - h // 2 :].sum())
    if top < 0.6 * bottom:
        shape = "triangle"
    else:
        shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "diamond"
    colour = image[:, fg].mean(1)  # (3,)
    color = list(COLORS)[int((_PALETTE - colour).pow(2).sum(1).argmin())]
    cell = S / 3
    size = "large" if max(h, w) > 0.6 * cell else "small"
    row, col = min(int((y0 + y1 + 1) / 2 // cell), 2), min(int((x0 + x1 + 1) / 2 // cell), 2)
    return {"color": color, "shape": shape, "size": size, "cell": POSITIONS[3 * row + col]}


def match(judged: dict[str, str] | None, obj: dict[str, str]) -> dict[str, float]:
    """1.0/0.0 per attribute (and ``all``) of a judged image against the prompt's object (as a dict)."""
    hits = {a: float(judged is not None and judged[a] == obj[a]) for a in ATTRIBUTES}
    return hits | {"all": float(all(hits.values()))}


class TextToImageModule(TokenTaskModule):
    """Generate an image's VQ tokens from its caption.

    Batches are dicts with ``caption_ids`` (list of 1-D local text ids), ``images`` ``[B, 3, S, S]``
    (training targets, tokenized by the model's frozen image tokenizer), and for evaluation ``objects``
    (the scene's objects) and ``image_ids``. Arguments are those of ``TokenTaskModule`` plus:

    Args:
        cond_dropout: probability of training a sample without its caption (needed for guidance).
        num_examples: generated images written beside the real ones to the log dir at each evaluation.
    """

    def __init__(self, *args: Any, cond_dropout: float = 0.1, num_examples: int = 16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "image" not in self.media_tokenizers or "draw" not in self.space.tasks:
            raise ValueError("TextToImageModule needs an image tokenizer and a <draw> tag in its vocab")
        if not 0 <= cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        tokens = self.tokenizers["image"].grammar().max_length
        if self.decoding.max_new_tokens < tokens + 1:
            raise ValueError(
                f"decoding.max_new_tokens must be >= {tokens + 1} (the grid and </image>), "
                f"got {self.decoding.max_new_tokens}"
            )
        self.cond_dropout, self.num_examples = cond_dropout, num_examples

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        n = len(batch["caption_ids"])
        dropped = batch.get("unconditional") or [False] * n
        out = []
        for i in range(n):
            sample: list[Segment] = [Special("<bos>")]
            if not dropped[i]:
                sample.append(Tokens("text", batch["caption_ids"][i], prefix=True))
            sample.append(Special("<draw>"))
            if targets:
                sample.append(Tokens("image", self.media_ids(batch, "image")[i], target=True))
            else:
                sample.append(Tokens("image", torch.empty(0, dtype=torch.long), close=False))
            out.append(sample)
        return out

    def unconditional(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"caption_ids": batch["caption_ids"], "unconditional": [True] * len(batch["caption_ids"])}

    def num_samples(self, batch: dict[str, Any]) -> int:
        return len(batch["caption_ids"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.cond_dropout > 0:
            batch = batch | {
                "unconditional": (torch.rand(len(batch["caption_ids"])) < self.cond_dropout).tolist()
            }
        return super().training_step(batch, batch_idx)

    @torch.no_grad()
    def draw(
        self, captions: list[str] | list[torch.Tensor], decoding: DecodingConfig | None = None
    ) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` for captions (strings or local text ids)."""
        ids = [self.tokenizers["text"].encode(c) if isinstance(c, str) else c for c in captions]
        grids = self.generate_segment({"caption_ids": ids}, "image", decoding)
        h, w = self.tokenizers["image"].grid
        if any(len(g) != h * w for g in grids):
            raise ValueError(f"generation stopped before the {h} x {w} grid: raise decoding.max_new_tokens")
        return self.media_tokenizers["image"].decode(torch.stack(grids).view(-1, h, w))

    # --- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        n = self.num_samples(batch)
        self.log(f"{stage}/loss", self.loss(batch), batch_size=n, add_dataloader_idx=False, sync_dist=True)
        images = self.draw(batch["caption_ids"])
        if "objects" in batch:
            scores = [match(judge_scene(img), objs[0]) for img, objs in zip(images.cpu(), batch["objects"])]
            for key in (*ATTRIBUTES, "all"):
                value = sum(s[key] for s in scores) / n
                self.log(
                    f"{stage}/match_{key}", value, batch_size=n, add_dataloader_idx=False, sync_dist=True
                )
        if batch_idx == 0 and not self.trainer.sanity_checking:
            self._write_examples(batch["images"], images, stage, batch.get("captions"))

    def _write_examples(
        self, real: torch.Tensor, drawn: torch.Tensor, stage: str, captions: list[str] | None
    ) -> None:
        if self.trainer.log_dir is None or self.num_examples < 1 or self.global_rank != 0:
            return
        k = self.num_examples
        pairs = torch.cat([drawn[:k].cpu(), real[:k].cpu()], dim=-1)  # generated | real, side by side
        path = Path(self.trainer.log_dir) / "samples" / f"{stage}_step{self.global_step:07d}.png"
        with atomic_path(path) as tmp:
            self.media_tokenizers["image"].write_media(pairs, tmp)
        if captions:
            rank_zero_info(f"{path}: " + "; ".join(captions[:k]))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        stage = EVAL_SPLITS[dataloader_idx] if dataloader_idx < len(EVAL_SPLITS) else f"test{dataloader_idx}"
        self._evaluate(batch, batch_idx, stage)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        images = self.draw(batch["caption_ids"]).cpu()
        return [
            {"image_id": i, "image": img}
            for i, img in zip(batch.get("image_ids", range(len(images))), images)
        ]
