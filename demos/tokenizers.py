"""Gradio app: media -> token grid -> reconstruction, with the reconstruction error, for every tokenizer.

    anytoken demo tokenizers [--ckpt runs/caption_scenes/release] [--tokenizer DIR ...] [--port 7860]

One tab per tokenizer. A *panel* says, for one modality, how to get its tokenizer when none is given,
which built-in examples it offers (shown as a gallery of thumbnails when they can be pictured), whether
files can be uploaded (read by the tokenizer's ``read_media``) or recorded, and how its media is shown.
Adding a modality is one ``@panel`` function. Tokenizers come from the saved tokenizer directories given
(``--tokenizer DIR``, matched by modality), from the model at ``--ckpt`` (its vocabulary's tokenizers), or,
for a modality with none of those, from the panel's default (trainable ones untrained, said so). The audio
tab keeps its default, the mu-law tokenizer, beside a given codec: nothing to train, the baseline.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import torch
from PIL import Image

import anytoken
from anytoken.tokenizers import Tokenizer
from demos.pictures import (
    MAX_COLUMNS,
    draw_forecast,
    draw_lines,
    save_png,
    side_by_side,
    spectrogram,
    tensor_image,
    token_grid,
)
from demos.widgets import example_figures, picture_picker, scratch_folder

DEFAULT_CKPT = Path("runs/caption_scenes/release")  # the quickstart's release: its text tokenizer
MAX_AUDIO_SECONDS = 10.0  # longer uploads and recordings are cut here (with a warning)


@dataclass
class Panel:
    """How one modality appears in the app.

    Attributes:
        modality: the tokenizer modality (tab title; matched against saved tokenizers' ``modality``).
        default: builds the tokenizer when none is given.
        examples: tokenizer -> {example name: media} (built-in data, nothing downloaded).
        show: (tokenizer, media, folder for files) -> the output component's value.
        output: the component showing media: ``"text"``, ``"image"`` or ``"audio"`` (a file path), or
            ``"dataframe"``.
        error_name: what ``reconstruction_error`` measures, for the label.
        upload_types: file suffixes uploads may have (read by ``read_media``); empty = no upload.
        text_input: media is typed text.
        record: uploads come through an audio player that can also record from the microphone.
        roundtrip: (tokenizer, media) -> (ids, decoded media); default ``encode`` then ``decode``.
        thumbnail: (tokenizer, media) -> an example's picture in the gallery; None: no gallery.
        figures: (tokenizer, media, decoded) -> named figures added to the summary (e.g. bitrate).
        compare: (tokenizer, media, decoded) -> one picture of input and reconstruction side by side.
        untrained_note: said when the default tokenizer is used (e.g. "random weights").
        keep_default: the default gets a tab even beside given tokenizers (a baseline to compare with).
    """

    modality: str
    default: Callable[[], Tokenizer]
    examples: Callable[[Tokenizer], dict[str, Any]]
    show: Callable[[Tokenizer, Any, Path], Any]
    output: Literal["text", "image", "audio", "dataframe"]
    error_name: str
    upload_types: list[str] = field(default_factory=list)
    text_input: bool = False
    record: bool = False
    roundtrip: Callable[[Tokenizer, Any], tuple[torch.Tensor, Any]] | None = None
    thumbnail: Callable[[Tokenizer, Any], Image.Image] | None = None
    figures: Callable[[Tokenizer, Any, Any], dict[str, str]] | None = None
    compare: Callable[[Tokenizer, Any, Any], Image.Image] | None = None
    untrained_note: str = ""
    keep_default: bool = False


PANELS: dict[str, Panel] = {}


def panel(make: Callable[[], Panel]) -> Callable[[], Panel]:
    """Decorator registering the ``Panel`` a function returns under its modality (one entry per modality)."""
    p = make()
    if p.modality in PANELS:
        raise ValueError(f"a panel for {p.modality!r} is already registered")
    PANELS[p.modality] = p
    return make


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
        show=lambda tok, text, folder: text, output="text",
        error_name="1 if the round trip differs, else 0", text_input=True,
        untrained_note="a BPE trained on 2,000 scene captions at start-up",
    )


@panel
def _image() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tokenizers.image_vq import ImageVQTokenizer

        return ImageVQTokenizer(image_size=64, downsample=8).eval()

    def examples(tok: Tokenizer) -> dict[str, Any]:
        from anytoken.tasks.data.synthetic.scenes import make_scenes

        size = tok.config().get("image_size", 64)
        return {s.caption(): s.render(max(size, 24)) for s in make_scenes("test", 4)}

    def picture(tok: Tokenizer, media: Any) -> Image.Image:
        if isinstance(media, Image.Image):
            return media.resize((192, 192), Image.NEAREST)
        return tensor_image(media, 192)  # (3, H, W) or (1, 3, H, W) in [0, 1]

    return Panel(
        modality="image", default=default, examples=examples,
        show=lambda tok, media, folder: save_png(picture(tok, media), folder), output="image",
        error_name="MSE in [0, 1] pixels", upload_types=["image"], thumbnail=picture,
        untrained_note="an untrained VQ tokenizer (random weights): pass --tokenizer DIR for a trained one",
    )


@panel
def _pose() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tokenizers.pose import PoseTokenizer

        return PoseTokenizer()

    def examples(tok: Tokenizer) -> dict[str, Any]:
        figures = example_figures(4)
        if tok.num_keypoints != len(figures[0][1]):  # another skeleton than the figures' (COCO's 17)
            return {}
        return {f"stick figure {i}": keypoints for i, (_, keypoints) in enumerate(figures)}

    def picture(tok: Tokenizer, kp: Any) -> Image.Image:
        kp = torch.as_tensor(kp, dtype=torch.float32).reshape(-1, 3)
        line = [(float(x), float(y)) if v > 0 else None for x, y, v in kp.tolist()]
        return draw_lines([line], tok.skeleton, size=192)

    def roundtrip(tok: Tokenizer, kp: Any) -> tuple[torch.Tensor, Any]:
        ids = tok.encode(kp)
        return ids.view(-1, tok.tokens_per_keypoint), tok.decode(ids)  # grid: one row per keypoint

    return Panel(
        modality="pose", default=default, examples=examples,
        show=lambda tok, kp, folder: save_png(picture(tok, kp), folder), output="image",
        error_name="largest coordinate error, fraction of the image", roundtrip=roundtrip, thumbnail=picture,
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

    def picture(tok: Tokenizer, positions: Any) -> Image.Image:
        x = torch.as_tensor(positions, dtype=torch.float64)
        return draw_forecast(x[None] if x.dim() == 2 else x, size=192)  # (A, T, 2): every path observed

    return Panel(
        modality="trajectory", default=default, examples=examples,
        show=lambda tok, x, folder: save_png(picture(tok, x), folder), output="image",
        error_name="largest per-axis position error", upload_types=[".csv"], roundtrip=roundtrip,
        thumbnail=picture,
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
        modality="table", default=default, examples=examples, show=lambda tok, rows, folder: rows,
        output="dataframe", error_name="mean per-column error", upload_types=[".csv", ".parquet"],
        untrained_note="fitted on scikit-learn's bundled iris table",
    )


def _clips(sample_rate: int, channels: int) -> dict[str, torch.Tensor]:
    """Built-in sounds ``[1, channels, T]`` at ``sample_rate``: alsa-utils' recorded words and espeak-ng's
    spoken scene captions where those packages are installed, and always a synthetic chirp."""
    from anytoken.tasks.data.synthetic.spoken import Utterance, alsa_words, espeak_path, synthesize
    from anytoken.tokenizers.audio_io import convert_channels, read_audio

    out = {}
    for path, words in alsa_words()[:2]:
        out[f"recorded: {words}"] = read_audio(path, sample_rate, channels)[0]
    if espeak_path() is not None:
        for caption in _scene_captions(2):
            wave = synthesize(Utterance(caption), sample_rate)  # (1, T)
            out[f"espeak-ng: {caption}"] = convert_channels(wave, channels)
    t = torch.arange(int(1.5 * sample_rate)) / sample_rate
    chirp = 0.5 * torch.sin(2 * math.pi * (200 * t + 600 * t**2)) * torch.hann_window(t.numel())  # 200 Hz up
    out["chirp, 200 Hz to 2 kHz"] = chirp.repeat(channels, 1)
    return {name: wave[None] for name, wave in out.items()}  # (1, C, T)


def _write_wave(tok: Tokenizer, wave: torch.Tensor, folder: Path) -> str:
    """``wave`` ``[B, C, T]`` (its first item) as a new WAV file in ``folder`` (the players play files)."""
    path = Path(tempfile.mkstemp(suffix=".wav", dir=folder)[1])
    tok.write_media(wave[0].clamp(-1, 1), path)
    return str(path)


@panel
def _audio() -> Panel:
    def default() -> Tokenizer:
        from anytoken.tokenizers import MuLawTokenizer

        return MuLawTokenizer()

    def figures(tok: Tokenizer, wave: Any, decoded: Any) -> dict[str, str]:
        from anytoken.tasks.metrics.audio import bitrate_kbps, mel_distance, si_snr

        decoded = decoded[..., : wave.shape[-1]]
        return {"bitrate": f"{bitrate_kbps(tok):.2f} kbps", "SI-SNR": f"{si_snr(wave, decoded):.1f} dB",
                "mel distance": f"{mel_distance(wave, decoded, tok.sample_rate):.3f}"}

    def compare(tok: Tokenizer, wave: Any, decoded: Any) -> Image.Image:
        return side_by_side([spectrogram(wave, tok.sample_rate, "input"),
                             spectrogram(decoded[..., : wave.shape[-1]], tok.sample_rate, "reconstruction")])

    return Panel(
        modality="audio", default=default, examples=lambda tok: _clips(tok.sample_rate, tok.channels),
        show=_write_wave, output="audio", error_name="negative SI-SNR in dB", upload_types=["audio"],
        record=True, thumbnail=lambda tok, wave: spectrogram(wave, tok.sample_rate, height=96),
        figures=figures, compare=compare, keep_default=True,
        untrained_note="mu-law, 8 bits a sample: nothing to train (pass --tokenizer DIR for a codec)",
    )


# --- the app ------------------------------------------------------------------------------------------
@dataclass
class Tab:
    """One tab: a panel, its tokenizer and where the tokenizer came from."""

    panel: Panel
    tokenizer: Tokenizer
    source: str


def _given(ckpt: str | Path | None, dirs: list[str] | None) -> tuple[list[tuple[Tokenizer, str]], str]:
    """``(tokenizer, source)`` from saved directories and the model at ``ckpt``, and a status line."""
    found: list[tuple[Tokenizer, str]] = []
    notes = []
    for directory in dirs or []:
        try:
            tok = Tokenizer.from_pretrained(directory)
        except (ValueError, FileNotFoundError, OSError, ImportError) as err:  # ImportError: no transformers
            notes.append(f"cannot load tokenizer `{directory}`: {err}")
            continue
        found.append((tok, f"loaded from `{directory}`"))
        notes.append(f"{tok.modality}: `{directory}`")
    path = Path(ckpt or DEFAULT_CKPT)
    if path.exists():
        try:
            model = anytoken.load(path)
        except ValueError as err:  # a broken or foreign file: said in the page
            notes.append(f"cannot load the model at `{path}`: {err}")
        else:
            have = {tok.modality for tok, _ in found}
            for modality, tok in model.tokenizers.items():  # trained ones with the model's weights
                if modality not in have:
                    found.append((tok, f"from the model at `{path}`"))
                    notes.append(f"{modality}: from the model at `{path}`")
    elif ckpt is not None:
        notes.append(f"no model at `{path}`")
    return found, "; ".join(notes)


def _tabs(found: list[tuple[Tokenizer, str]]) -> tuple[list[Tab], list[str]]:
    """Every panel's tabs (the given tokenizers of its modality, then its default when none is given or it
    is kept), and messages for defaults that cannot be built."""
    tabs, problems = [], []
    for modality, p in PANELS.items():
        mine = [Tab(p, tok, source) for tok, source in found if tok.modality == modality]
        if not mine or p.keep_default:
            try:
                tok = p.default()
            except (ImportError, ValueError) as err:
                problems.append(f"**The {modality} tokenizer is not available:** {err}")
            else:
                mine.append(Tab(p, tok, f"default: {p.untrained_note}" if p.untrained_note else "default"))
        tabs += mine
    return tabs, problems


class BadInput(ValueError):
    """An input the tab cannot use; its message is shown as it is."""


def _media_of(p: Panel, tok: Tokenizer, examples: dict[str, Any], name: str | None, text: str,
              file: str | None) -> Any:
    """The input a tab's controls select: an upload or recording, typed text, or a built-in example."""
    if file:
        try:
            media = tok.read_media(Path(file))
        except (ValueError, NotImplementedError, OSError) as exc:
            raise BadInput(f"**`{Path(file).name}` is not a file the {p.modality} tokenizer reads:** {exc}")
        if p.output == "audio" and media.shape[-1] > MAX_AUDIO_SECONDS * tok.sample_rate:
            gr.Warning(f"The clip is longer than {MAX_AUDIO_SECONDS:g} s: only its start is tokenized.")
            media = media[..., : int(MAX_AUDIO_SECONDS * tok.sample_rate)]
        return media
    if p.text_input and text:
        return text
    if examples:  # the chosen example, or the first one
        return examples.get(name, next(iter(examples.values())))
    raise BadInput("Give an input first.")


def _tab(tab: Tab, title: str, api_name: str, folder: Path) -> None:
    p, tok = tab.panel, tab.tokenizer
    examples = p.examples(tok)
    with gr.Tab(title):
        gr.Markdown(f"**{type(tok).__name__}** (`{tok.name}`, {tok.vocab_size} ids) — {tab.source}")
        with gr.Row():
            with gr.Column():
                if p.thumbnail is not None and examples:
                    pictures = {name: p.thumbnail(tok, media) for name, media in examples.items()}
                    choice = picture_picker(pictures, elem_id=f"{api_name}_examples")
                else:
                    choice = gr.Dropdown(list(examples), value=next(iter(examples), None),
                                         label="Built-in example")
                typed = gr.Textbox(label="Or type text", visible=p.text_input)
                if p.record:
                    upload = gr.Audio(label="Or upload or record a clip", sources=["upload", "microphone"],
                                      type="filepath")
                else:
                    upload = gr.File(label=f"Or upload ({', '.join(p.upload_types)})", type="filepath",
                                     file_types=p.upload_types or None, visible=bool(p.upload_types))
                button = gr.Button("Tokenize", variant="primary")
            with gr.Column():
                grid = gr.Image(label="Token grid", type="pil", interactive=False,
                                elem_classes=["token-grid"])
                summary = gr.Markdown()
        compare = gr.Image(label="Input and reconstruction", type="pil", interactive=False,
                           visible=p.compare is not None)
        with gr.Row():
            original, recon = (_output(p, "Input"), _output(p, "Reconstruction"))
        error = gr.Number(None, label=f"Reconstruction error ({p.error_name})", interactive=False)

        def run(name: str | None, text: str, file: str | None,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            try:
                media = _media_of(p, tok, examples, name, text, file)
                progress(0.1, desc="encoding and decoding")
                ids, decoded = p.roundtrip(tok, media) if p.roundtrip else _roundtrip(tok, media)
                progress(0.5, desc="measuring the reconstruction")
                err = _error(tok, media)
                figures = p.figures(tok, media, decoded) if p.figures else {}
                pair = p.compare(tok, media, decoded) if p.compare else None
            except BadInput as exc:
                return (None, str(exc), None, None, None, None)
            except ValueError as exc:
                message = f"**The {p.modality} tokenizer rejects this input:** {exc}"
                return (None, message, None, None, None, None)
            summary = [f"{ids.numel()} tokens, shape {tuple(ids.shape)}, ids in [0, {tok.vocab_size})",
                       *(f"{k} {v}" for k, v in figures.items())]
            if ids.dim() > 1 and ids.shape[-1] > MAX_COLUMNS:
                summary.append(f"the grid shows the first {MAX_COLUMNS} of {ids.shape[-1]} columns")
            return (token_grid(ids), ", ".join(summary), pair, p.show(tok, media, folder),
                    p.show(tok, decoded, folder), err)

        button.click(run, [choice, typed, upload], [grid, summary, compare, original, recon, error],
                     api_name=api_name)


def _error(tok: Tokenizer, media: Any) -> float | None:
    """The tokenizer's reconstruction error of ``media``; None for tokenizers that define none (adapters
    of pretrained codecs: the audio tab's figures measure them)."""
    try:
        return tok.reconstruction_error(media)
    except NotImplementedError:
        return None


def _roundtrip(tok: Tokenizer, media: Any) -> tuple[torch.Tensor, Any]:
    ids = tok.encode(media)
    return ids, tok.decode(ids)


def _output(p: Panel, label: str) -> gr.components.Component:
    if p.output == "image":
        return gr.Image(label=label, type="filepath", interactive=False)
    if p.output == "audio":
        return gr.Audio(label=label, type="filepath", interactive=False)
    if p.output == "dataframe":
        return gr.Dataframe(label=label, interactive=False)
    return gr.Textbox(label=label, interactive=False)


def build_app(ckpt: str | Path | None = None, tokenizer_dirs: list[str] | None = None) -> gr.Blocks:
    """One tab per tokenizer; tokenizers are built or loaded once, here.

    Args:
        ckpt: a release directory whose vocabulary's tokenizers are used (default ``DEFAULT_CKPT``).
        tokenizer_dirs: directories written by ``save_pretrained`` (they win over ``ckpt``'s).
    """
    found, status = _given(ckpt, tokenizer_dirs)
    tabs, problems = _tabs(found)
    folder = scratch_folder("anytoken-tokenizers-demo-")
    with gr.Blocks(title="anytoken: tokenizers") as app:
        gr.Markdown("# Tokenizers\nEvery modality: media -> token grid -> reconstruction, with the error.")
        gr.Markdown("\n\n".join([status or "No tokenizers given: each tab uses its default tokenizer.",
                                  *problems]))
        seen: dict[str, int] = {}
        for tab in tabs:
            modality = tab.panel.modality
            alone = sum(t.panel.modality == modality for t in tabs) == 1
            index = seen[modality] = seen.get(modality, 0) + 1  # the first tab of a modality keeps its name
            _tab(tab, modality if alone else f"{modality} ({tab.tokenizer.name})",
                 f"tokenize_{modality}" + (f"_{index}" if index > 1 else ""), folder)
    return app
