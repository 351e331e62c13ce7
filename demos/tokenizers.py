"""Gradio app: media -> token grid -> reconstruction, with the reconstruction error, for every tokenizer.

    anytoken demo tokenizers [--ckpt runs/caption_scenes/release] [--tokenizer DIR ...] [--port 7860]

One tab per registered *panel*. A panel says how to get its tokenizer when none is given, which built-in
examples it offers, whether files can be uploaded (read by the tokenizer's ``read_media``) and how its
media is shown. Adding a modality is one ``@panel`` function. Tokenizers come, in this order, from the
saved tokenizer directories given (``--tokenizer DIR``, matched by modality), from the model at
``--ckpt`` (its vocabulary's tokenizers), or from the panel's default (trainable ones untrained, said so).
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import torch
from PIL import Image, ImageDraw

import anytoken
from anytoken.tokenizers import Tokenizer

DEFAULT_CKPT = Path("runs/caption_scenes/release")  # the quickstart's release: its text tokenizer
MAX_GRID_CELLS = 4096  # token grids larger than this are shown cropped


@dataclass
class Panel:
    """How one modality appears in the app.

    Attributes:
        modality: the tokenizer modality (tab title; matched against saved tokenizers' ``modality``).
        default: builds the tokenizer when none is given.
        examples: tokenizer -> {example name: media} (built-in data, nothing downloaded).
        show: (media, folder for files) -> the output component's value.
        output: the component showing media: ``"text"``, ``"image"`` (a file path) or ``"dataframe"``.
        error_name: what ``reconstruction_error`` measures, for the label.
        upload_types: file suffixes uploads may have (read by ``read_media``); empty = no upload.
        text_input: media is typed text.
        roundtrip: (tokenizer, media) -> (ids, decoded media); default ``encode`` then ``decode``.
        untrained_note: said when the default tokenizer is used (e.g. "random weights").
    """

    modality: str
    default: Callable[[], Tokenizer]
    examples: Callable[[Tokenizer], dict[str, Any]]
    show: Callable[[Any, Path], Any]
    output: Literal["text", "image", "dataframe"]
    error_name: str
    upload_types: list[str] = field(default_factory=list)
    text_input: bool = False
    roundtrip: Callable[[Tokenizer, Any], tuple[torch.Tensor, Any]] | None = None
    untrained_note: str = ""


PANELS: dict[str, Panel] = {}


def panel(make: Callable[[], Panel]) -> Callable[[], Panel]:
    """Decorator registering the ``Panel`` a function returns under its modality (one entry per modality)."""
    p = make()
    if p.modality in PANELS:
        raise ValueError(f"a panel for {p.modality!r} is already registered")
    PANELS[p.modality] = p
    return make


# --- the token grid ----------------------------------------------------------------------------------
def token_grid(ids: torch.Tensor, cell: int = 22) -> Image.Image:
    """Ids as a grid of coloured cells (colour from the id, the id written inside when it fits).

    ``[h, w]`` grids keep their layout; ``[B, h, w]`` shows the first item; anything else is flattened
    into rows of 16. At most ``MAX_GRID_CELLS`` cells are drawn.
    """
    ids = ids.detach().cpu().long()
    while ids.dim() > 2:
        ids = ids[0]
    if ids.dim() < 2:
        flat = ids.reshape(-1)[:MAX_GRID_CELLS]
        width = min(16, max(1, flat.numel()))
        ids = torch.nn.functional.pad(flat, (0, -flat.numel() % width), value=-1).view(-1, width)
    ids = ids[: MAX_GRID_CELLS // max(ids.shape[1], 1)]
    h, w = ids.shape
    image = Image.new("RGB", (max(w, 1) * cell, max(h, 1) * cell), "white")
    draw = ImageDraw.Draw(image)
    for (r, c), value in zip(((r, c) for r in range(h) for c in range(w)), ids.reshape(-1).tolist()):
        if value < 0:
            continue
        hue = zlib.crc32(str(value).encode())
        color = (80 + hue % 160, 80 + (hue >> 8) % 160, 80 + (hue >> 16) % 160)
        box = (c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1)
        draw.rectangle(box, fill=color)
        if value < 1000:
            draw.text((c * cell + 2, r * cell + 5), str(value), fill="black")
    return image


# --- panels -------------------------------------------------------------------------------------------
def _scene_captions(count: int = 4) -> list[str]:
    from anytoken.tasks.data.synthetic.scenes import make_scenes

    return [scene.caption() for scene in make_scenes("test", count)]


@panel
def _text() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tasks.data.synthetic.scenes import make_scenes
        from anytoken.tokenizers import BPETokenizer

        return BPETokenizer.train([s.caption() for s in make_scenes("train", 2000)], vocab_size=320)

    return Panel(
        modality="text", default=default, examples=lambda tok: {c: c for c in _scene_captions()},
        show=lambda text, folder: text, output="text", error_name="1 if the round trip differs, else 0",
        text_input=True, untrained_note="a BPE trained on 2,000 scene captions at start-up",
    )


def _save_image(image: Image.Image, folder: Path) -> str:
    """Write ``image`` to a new PNG in ``folder`` (gr.Image shows files) and return its path."""
    path = Path(tempfile.mkstemp(suffix=".png", dir=folder)[1])
    image.save(path)
    return str(path)


@panel
def _image() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tokenizers.image_vq import ImageVQTokenizer

        return ImageVQTokenizer(image_size=64, downsample=8).eval()

    def examples(tok: Tokenizer) -> dict[str, Any]:
        from anytoken.tasks.data.synthetic.scenes import make_scenes

        size = tok.config().get("image_size", 64)
        return {s.caption(): s.render(max(size, 24)) for s in make_scenes("test", 4)}

    def show(media: Any, folder: Path) -> str:
        if isinstance(media, Image.Image):
            return _save_image(media.resize((192, 192), Image.NEAREST), folder)
        x = media[0] if media.dim() == 4 else media  # (3, H, W) in [0, 1]
        array = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return _save_image(Image.fromarray(array).resize((192, 192), Image.NEAREST), folder)

    return Panel(
        modality="image", default=default, examples=examples, show=show, output="image",
        error_name="MSE in [0, 1] pixels", upload_types=["image"],
        untrained_note="an untrained VQ tokenizer (random weights): pass --tokenizer DIR for a trained one",
    )


def _draw_points(lines: list[list[Any]], edges: list[tuple[int, int]], folder: Path) -> str:
    """Polylines (a skeleton when ``edges`` is given) of ``(x, y)`` points in ``[0, 1]`` (None: not drawn)
    on a white canvas; returns the PNG's path."""
    size, margin = 192, 8
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        scale = size - 2 * margin
        xy = [None if p is None else (margin + p[0] * scale, margin + p[1] * scale) for p in line]
        color = ((40 + 90 * k) % 256, (160 + 50 * k) % 256, (220 - 60 * k) % 256)
        for a, b in edges or list(zip(range(len(xy) - 1), range(1, len(xy)))):
            if max(a, b) < len(xy) and xy[a] is not None and xy[b] is not None:
                draw.line([xy[a], xy[b]], fill=color, width=2)
        for p in filter(None, xy):
            draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=color)
    return _save_image(image, folder)


@panel
def _pose() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tokenizers.pose import PoseTokenizer

        return PoseTokenizer()

    def examples(tok: Tokenizer) -> dict[str, Any]:
        from anytoken.tasks.data.synthetic.stick_figures import StickFiguresDataset

        data = StickFiguresDataset("test", 4)
        if len(data.keypoint_names) != getattr(tok, "num_keypoints", len(data.keypoint_names)):
            return {}
        out = {}
        for i in range(len(data)):
            item = data[i]
            kp = torch.as_tensor(item["keypoints"], dtype=torch.float32).clone()  # (K, 3) pixels
            kp[:, :2] /= float(item["image"].size[0])  # normalised to the image
            out[f"stick figure {i}"] = kp
        return out

    def show(kp: torch.Tensor, folder: Path) -> str:
        kp = torch.as_tensor(kp, dtype=torch.float32).reshape(-1, 3)
        from anytoken.tokenizers.pose import COCO_SKELETON

        line = [(float(x), float(y)) if v > 0 else None for x, y, v in kp.tolist()]
        return _draw_points([line], list(COCO_SKELETON), folder)

    def roundtrip(tok: Tokenizer, kp: Any) -> tuple[torch.Tensor, Any]:
        ids = tok.encode(kp)
        return ids.view(-1, tok.tokens_per_keypoint), tok.decode(ids)  # grid: one row per keypoint

    return Panel(
        modality="pose", default=default, examples=examples, show=show, output="image",
        error_name="largest coordinate error, fraction of the image", roundtrip=roundtrip,
    )


@panel
def _trajectory() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tokenizers.trajectory import TrajectoryTokenizer

        return TrajectoryTokenizer()

    def examples(tok: Tokenizer) -> dict[str, Any]:
        from anytoken.tasks.data.synthetic.motion import MotionDataset

        data = MotionDataset("test", 4, num_steps=24)
        return {f"scene {i} ({len(data[i]['positions'])} agents)": torch.as_tensor(data[i]["positions"])
                for i in range(len(data))}

    def roundtrip(tok: Tokenizer, positions: Any) -> tuple[torch.Tensor, Any]:
        from anytoken.tokenizers.trajectory import MotionState

        x = torch.as_tensor(positions, dtype=torch.float64)
        x = x[None] if x.dim() == 2 else x  # (A, T, 2)
        ids = tok.encode(x)
        return ids.view(-1, 2 * x.shape[0]), tok.decode(ids, MotionState.at_rest(x[:, 0]))

    def show(positions: Any, folder: Path) -> str:
        x = torch.as_tensor(positions, dtype=torch.float64)
        x = x[None] if x.dim() == 2 else x  # (A, T, 2)
        flat = x.reshape(-1, 2)
        lo, hi = flat.min(0).values, flat.max(0).values
        unit = ((x - lo) / (hi - lo).max().clamp(min=1e-9)).tolist()  # both axes on one scale
        return _draw_points([[tuple(p) for p in agent] for agent in unit], [], folder)

    return Panel(
        modality="trajectory", default=default, examples=examples, show=show, output="image",
        error_name="largest per-axis position error", upload_types=[".csv"], roundtrip=roundtrip,
    )


@panel
def _table() -> Panel:
    def frame() -> Any:
        from anytoken.tasks.data.tables import load_bundled

        return load_bundled("iris")

    def default() -> Tokenizer:
        from anytoken.tokenizers.table import TableTokenizer

        return TableTokenizer.fit(frame())

    def examples(tok: Tokenizer) -> dict[str, Any]:
        rows = frame()
        if list(getattr(tok, "columns", [])) != list(rows.columns):
            return {}
        return {f"iris rows {i}-{i + 4}": rows.iloc[i : i + 5].reset_index(drop=True) for i in (0, 50, 100)}

    return Panel(
        modality="table", default=default, examples=examples, show=lambda rows, folder: rows,
        output="dataframe", error_name="mean per-column error", upload_types=[".csv", ".parquet"],
        untrained_note="fitted on scikit-learn's bundled iris table",
    )


# --- the app ------------------------------------------------------------------------------------------
def _tokenizers(ckpt: str | Path | None, dirs: list[str] | None) -> tuple[dict[str, Tokenizer], str]:
    """Modality -> tokenizer from saved directories and the model at ``ckpt``, and a status line."""
    found: dict[str, Tokenizer] = {}
    notes = []
    for directory in dirs or []:
        try:
            tok = Tokenizer.from_pretrained(directory)
        except (ValueError, FileNotFoundError, OSError) as err:
            notes.append(f"cannot load tokenizer `{directory}`: {err}")
            continue
        found[tok.modality] = tok
        notes.append(f"{tok.modality}: `{directory}`")
    path = Path(ckpt or DEFAULT_CKPT)
    if path.exists():
        try:
            model = anytoken.load(path)
        except ValueError as err:  # a broken or foreign file: said in the page
            notes.append(f"cannot load the model at `{path}`: {err}")
        else:
            for modality, tok in model.tokenizers.items():  # trained ones with the model's weights
                if modality not in found:
                    found[modality] = tok
                    notes.append(f"{modality}: from the model at `{path}`")
    elif ckpt is not None:
        notes.append(f"no model at `{path}`")
    return found, "; ".join(notes)


def _tab(p: Panel, tok: Tokenizer, source: str, folder: Path) -> None:
    examples = p.examples(tok)
    with gr.Tab(p.modality):
        gr.Markdown(f"**{type(tok).__name__}** (`{tok.name}`, {tok.vocab_size} ids) — {source}")
        with gr.Row():
            with gr.Column():
                first = next(iter(examples), None)
                choice = gr.Dropdown(list(examples), value=first, label="Built-in example")
                typed = gr.Textbox(label="Or type text", visible=p.text_input)
                upload = gr.File(label=f"Or upload ({', '.join(p.upload_types)})", type="filepath",
                                 file_types=p.upload_types or None, visible=bool(p.upload_types))
                button = gr.Button("Tokenize", variant="primary")
            with gr.Column():
                grid = gr.Image(label="Token grid", type="pil", interactive=False)
                summary = gr.Markdown()
        with gr.Row():
            original, recon = (_output(p, "Input"), _output(p, "Reconstruction"))
        error = gr.Number(label=f"Reconstruction error ({p.error_name})", interactive=False)

        def run(name: str | None, text: str, file: str | None) -> tuple[Any, ...]:
            if file:
                try:
                    media = tok.read_media(Path(file))
                except (ValueError, NotImplementedError, OSError) as exc:
                    what = f"`{Path(file).name}` is not a file the {p.modality} tokenizer reads"
                    return (None, f"**{what}:** {exc}", None, None, None)
            elif p.text_input and text:
                media = text
            elif examples:  # the chosen example, or the first one
                media = examples.get(name, next(iter(examples.values())))
            else:
                return (None, "Give an input first.", None, None, None)
            try:
                ids, decoded = p.roundtrip(tok, media) if p.roundtrip else _roundtrip(tok, media)
                err = tok.reconstruction_error(media)
            except ValueError as exc:
                return (None, f"**The {p.modality} tokenizer rejects this input:** {exc}", None, None, None)
            summary = f"{ids.numel()} tokens, shape {tuple(ids.shape)}, ids in [0, {tok.vocab_size})"
            return (token_grid(ids), summary, p.show(media, folder), p.show(decoded, folder), err)

        button.click(run, [choice, typed, upload], [grid, summary, original, recon, error],
                     api_name=f"tokenize_{p.modality}")


def _roundtrip(tok: Tokenizer, media: Any) -> tuple[torch.Tensor, Any]:
    ids = tok.encode(media)
    return ids, tok.decode(ids)


def _output(p: Panel, label: str) -> gr.components.Component:
    if p.output == "image":
        return gr.Image(label=label, type="filepath", interactive=False)
    if p.output == "dataframe":
        return gr.Dataframe(label=label, interactive=False)
    return gr.Textbox(label=label, interactive=False)


def build_app(ckpt: str | Path | None = None, tokenizer_dirs: list[str] | None = None) -> gr.Blocks:
    """One tab per registered panel; tokenizers are built or loaded once, here.

    Args:
        ckpt: a release directory whose vocabulary's tokenizers are used (default ``DEFAULT_CKPT``).
        tokenizer_dirs: directories written by ``save_pretrained`` (they win over ``ckpt``'s).
    """
    found, status = _tokenizers(ckpt, tokenizer_dirs)
    folder = Path(tempfile.mkdtemp(prefix="anytoken-tokenizers-demo-"))
    with gr.Blocks(title="anytoken: tokenizers") as app:
        gr.Markdown("# Tokenizers\nEvery modality: media -> token grid -> reconstruction, with the error.")
        gr.Markdown(status or "No tokenizers given: each tab uses its default tokenizer.")
        for modality, p in PANELS.items():
            if modality in found:
                _tab(p, found[modality], "loaded", folder)
                continue
            try:
                tok = p.default()
            except (ImportError, ValueError) as err:
                with gr.Tab(modality):
                    gr.Markdown(f"**The {modality} tokenizer is not available:** {err}")
                continue
            _tab(p, tok, f"default: {p.untrained_note}" if p.untrained_note else "default", folder)
    return app
