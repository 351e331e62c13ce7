"""The ``anytoken`` command: Lightning's CLI (``fit|validate|test|predict --config X.yaml``, every
hyperparameter overridable: ``--model.init_args.lr 3e-4``) and the commands ``USAGE`` lists."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from anytoken.heads import DecodingConfig
    from anytoken.models import AnytokenModel

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
USAGE = """usage: anytoken COMMAND [ARGS]

commands:
  fit | validate | test | predict   Lightning CLI: anytoken fit --config configs/caption_scenes.yaml
  tokenize --config X.yaml [--out DIR] [--workers N]   write a config's training data as token shards
  caption IMAGE... --ckpt PATH      caption image files with a checkpoint (.ckpt) or release directory
  vqa IMAGE "QUESTION" --ckpt PATH  answer a question about an image file with a VQA model
  demo captioning|vqa|tokenizers|anything|generate   launch a Gradio app on 127.0.0.1 (--ckpt, --port)
  export --ckpt X.ckpt -o DIR       write a release directory (config.json + model.safetensors)
  encode MEDIA --tokenizer DIR -o X.npy    media file -> local token ids
  decode X.npy --tokenizer DIR -o MEDIA    local token ids -> media file
  bench MEDIA... --tokenizer DIR|NAME      tokenizers vs JPEG/WebP, Opus/Codec2/mu-law: tables + JSON

run 'anytoken COMMAND --help' for a command's options; docs/input_policy.md for what each accepts."""
TOKENIZER_ERRORS = (ValueError, FileNotFoundError, NotImplementedError, Warning)  # Warning: --strict's
MEDIA_POLICY = """input policy (docs/input_policy.md):
  images  any Pillow format, converted to RGB (16-bit scaled, alpha on white); the centred square is
          cropped, then resized; truncated or corrupt files are refused; above 32 megapixels refused
          (JPEGs are decoded at a reduced scale first)
  audio   WAV, FLAC, OGG, AIFF, MP3; downmixed, resampled (rates below 4000 Hz refused); NaN/inf,
          empty and truncated files refused; samples outside [-1, 1] or clipped are clamped and
          silence is encoded, each with a warning (--strict refuses them)
  tables  .csv (UTF-8, byte-order mark allowed) or .parquet with the fitted schema's columns
  trajectories  a scene,agent,t,x,y CSV of one scene on uniform steps
output policy: written atomically in the format of the suffix; permissions follow the umask; a link, a
  directory or a device at the output path is refused; an interrupted write leaves nothing behind"""


def _run_cli(argv: Sequence[str] | None, run: bool):  # noqa: ANN202 - a LightningCLI instance
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    class AnytokenCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse's parser
            parser.link_arguments("data.vocab", "model.init_args.vocab", apply_on="instantiate")

        def before_fit(self) -> None:
            t = self.trainer
            if t.max_epochs in (None, -1, 1000) and t.max_steps in (None, -1) and t.max_time is None:
                raise SystemExit("anytoken fit: set trainer.max_epochs, max_steps or max_time "
                                 "(Lightning would otherwise train for 1000 epochs)")

    no_abbrev = {"allow_abbrev": False}
    return AnytokenCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={cmd: no_abbrev for cmd in LIGHTNING_COMMANDS} if run else no_abbrev,
        args=None if argv is None else list(argv), run=run,
    )


def from_config(config: str | Path, *overrides: str):  # noqa: ANN201 - a LightningCLI instance
    """Instantiate model, datamodule and trainer from a YAML config without running anything.

    Example:
        >>> cli = from_config("configs/caption_scenes.yaml", "--trainer.max_epochs=1")
        >>> cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    """
    return _run_cli(["--config", str(config), *overrides], run=False)


@contextmanager
def _one_line_errors(command: str, errors: tuple[type[Exception], ...] = TOKENIZER_ERRORS) -> Iterator[None]:
    """Turn a bad input file or argument (one of ``errors``, also when another exception wraps it, as
    jsonargparse does) into exit 1 with one line naming the command (no traceback)."""
    try:
        yield
    except Exception as err:
        cause = err
        while cause is not None and not isinstance(cause, errors):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise SystemExit(f"anytoken {command}: {cause}") from None


def _model_args(parser: argparse.ArgumentParser, argv: Sequence[str],
                max_new_tokens: int) -> argparse.Namespace:
    """Parse ``argv`` with the options of the commands that run a model added: --ckpt and the decoding."""
    parser.epilog, parser.formatter_class = MEDIA_POLICY, argparse.RawDescriptionHelpFormatter
    parser.add_argument("--ckpt", required=True, help="a .ckpt file or a release directory")
    parser.add_argument("--strategy", choices=("greedy", "sample", "beam"), default="greedy")
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    return parser.parse_args(argv)


def _load_images(args: argparse.Namespace, command: str,
                 paths: Sequence[str]) -> tuple[AnytokenModel, torch.Tensor, DecodingConfig]:
    """The model of ``--ckpt`` (it must have ``command``'s format), image files as one batch at the size
    it reads, and the decoding ``args`` ask for."""
    import torch

    from anytoken import load
    from anytoken.heads import DecodingConfig
    from anytoken.tokenizers.image_io import image_to_tensor, load_image

    model = load(args.ckpt)
    model.task_format(command)
    encoder = model.image_encoder  # None: images enter as VQ tokens, at the image tokenizer's size
    size = encoder.config.image_size if encoder is not None else model.tokenizers["image"].image_size
    images = torch.stack([image_to_tensor(load_image(p, size), size) for p in paths])
    return model, images, DecodingConfig(args.strategy, args.max_new_tokens, num_beams=args.num_beams)


def _caption(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken caption", description="Caption image files.")
    parser.add_argument("images", nargs="+", help="image files (any PIL format; converted to RGB)")
    args = _model_args(parser, argv, max_new_tokens=64)
    with _one_line_errors("caption"):
        model, images, decoding = _load_images(args, "caption", args.images)
    for path, caption in zip(args.images, model.caption(images, decoding)):
        print(f"{path}\t{caption}")


def _vqa(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken vqa", description="Answer a question about an image.")
    parser.add_argument("image", help="an image file (any PIL format; converted to RGB)")
    parser.add_argument("question", help='the question, e.g. "what color is the circle?"')
    args = _model_args(parser, argv, max_new_tokens=16)
    with _one_line_errors("vqa"):
        model, image, decoding = _load_images(args, "vqa", [args.image])
        print(model.ask(image, [args.question], decoding=decoding)[0])


def _export(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken export", description="Write a release directory.")
    parser.add_argument("--ckpt", required=True, help="a Lightning .ckpt file")
    parser.add_argument("-o", "--output", required=True, help="the release directory to write")
    args = parser.parse_args(argv)
    from anytoken import load

    with _one_line_errors("export"):
        load(args.ckpt).save_pretrained(args.output)
    print(f"release written to {args.output}")


def _tokenizer_args(
    argv: Sequence[str], command: str, description: str, source: str, output: str
) -> argparse.Namespace:
    """Parse ``anytoken encode|decode SOURCE --tokenizer DIR -o OUTPUT`` (the strings are help texts)."""
    parser = argparse.ArgumentParser(prog=f"anytoken {command}", description=description, epilog=MEDIA_POLICY,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help=source)
    parser.add_argument("--tokenizer", required=True, help="a directory written by save_pretrained")
    parser.add_argument("-o", "--output", required=True, help=output)
    parser.add_argument("--strict", action="store_true",
                        help="refuse input the policy would fix with a warning (clipping, silence)")
    return parser.parse_args(argv)


@contextmanager
def _media_warnings(command: str, strict: bool) -> Iterator[None]:
    """Show each ``MediaWarning`` as one line on stderr, or raise it (``strict``)."""
    import warnings

    from anytoken.tokenizers.base import MediaWarning

    seen = set()  # the file and the tokenizer both check a wave: say each finding once

    def one_line(message, category, *rest) -> None:  # noqa: ANN001 - warnings.showwarning's signature
        finding = str(message).split(": ", 1)[-1]
        if finding not in seen:
            seen.add(finding)
            print(f"anytoken {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("error" if strict else "default", MediaWarning)
        warnings.showwarning = one_line
        yield


def _regular_file(path: str, what: str) -> Path:
    """``path`` if it is a regular file, else ``ValueError`` naming it."""
    source = Path(path)
    if source.is_dir():
        raise ValueError(f"{source} is a directory: give one {what} file")
    if not source.is_file():
        raise FileNotFoundError(f"no {what} file at {source}")
    return source


@contextmanager
def _naming(path: Path, *others: Path) -> Iterator[None]:
    """Make every ``ValueError`` raised inside name the user's file: ``path``, unless it names one of
    ``others`` (or ``path``) already."""
    try:
        yield
    except ValueError as err:
        if any(str(p) in str(err) for p in (path, *others)):
            raise
        raise ValueError(f"{path}: {err}") from None


def _sidecar(ids_path: str | Path) -> Path:
    """Where ``encode`` keeps what ``decode`` needs beyond the ids (e.g. a trajectory's scene)."""
    return Path(f"{ids_path}.json")


def _encode(argv: Sequence[str]) -> None:
    args = _tokenizer_args(
        argv, "encode", "Media file -> token ids (.npy, plus X.npy.json when the ids need a header).",
        "the media file (image, audio, ... as the tokenizer reads)", "the .npy file of token ids to write",
    )
    import json

    import numpy as np

    from anytoken.atomic import atomic_path, check_target
    from anytoken.tokenizers import Tokenizer

    with _one_line_errors("encode"), _media_warnings("encode", args.strict):
        source, output = _regular_file(args.source, "media"), check_target(args.output)
        sidecar = check_target(_sidecar(output))
        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        with _naming(source):
            ids, header = tokenizer.encode_file(source)
        if header:
            with atomic_path(sidecar) as tmp:
                tmp.write_text(json.dumps(header))
        with atomic_path(output) as tmp, open(tmp, "wb") as f:
            np.save(f, ids.cpu().numpy())
        if not header:
            sidecar.unlink(missing_ok=True)  # a header of an earlier encode would not fit these ids
    print(f"{args.source}: {ids.numel()} tokens {tuple(ids.shape)} -> {args.output}")


def _decode(argv: Sequence[str]) -> None:
    args = _tokenizer_args(
        argv, "decode", "Token ids (.npy, and X.npy.json when encode wrote one) -> media file.",
        "a .npy file of local token ids (from anytoken encode)", "the media file to write (format by suffix)",
    )
    import numpy as np
    import torch

    from anytoken.atomic import check_target
    from anytoken.loading import read_json
    from anytoken.tokenizers import Tokenizer

    with _one_line_errors("decode"), _media_warnings("decode", args.strict):
        source, output = _regular_file(args.source, ".npy"), check_target(args.output)
        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        tokenizer.check_output(output)
        try:
            array = np.load(source, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            pickled = "allow_pickle" in str(err)  # numpy's words for pickled objects or a non-.npy file
            raise ValueError(f"{source}: not a .npy file of token ids"
                             + (" (anytoken never unpickles)" if pickled else f" ({err})")) from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "iub":
            raise ValueError(f"{source}: token ids must be integers, "
                             f"got {getattr(array, 'dtype', type(array))}")
        sidecar = _sidecar(source)
        header = read_json(sidecar, "an encode header") if sidecar.is_file() else None
        with _naming(source, output):
            tokenizer.decode_file(torch.from_numpy(array.astype(np.int64)), output, header)
    print(f"{args.source} -> {args.output}")


def _tokenize(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken tokenize",
                                     description="Write a training config's data as token shards.")
    parser.add_argument("--config", required=True, help="a training config (YAML) with a data section")
    parser.add_argument("--out", help="the shard folder (default: data.init_args.shards or runs/NAME/shards)")
    parser.add_argument("--workers", type=int, default=0, help="parallel writer processes")
    parser.add_argument("--shard-size", type=int, default=256, help="samples per shard")
    args = parser.parse_args(argv)
    from anytoken.tasks.data.shard_writer import tokenize_config

    with _one_line_errors("tokenize"):
        written = tokenize_config(args.config, args.out, args.workers, args.shard_size)
    for folder, index in written.items():
        print(f"{folder}: {index['num_samples']} samples in {len(index['shards'])} shards")


def _bench(argv: Sequence[str]) -> None:
    from anytoken.bench.command import main as bench

    with _one_line_errors("bench"):
        bench(argv)


DEMOS = ("captioning", "vqa", "tokenizers", "anything", "generate")  # demos/NAME.py: build_app(ckpt=...)


def load_demo(name: str):  # noqa: ANN201 - the demo's module
    """The module ``demos/NAME.py`` of a source checkout (the demos are not installed with the package)."""
    import importlib
    import importlib.util

    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose from {list(DEMOS)}")
    root = Path(__file__).resolve().parent.parent / "demos"
    if not (root / f"{name}.py").is_file():
        raise FileNotFoundError(f"no {root / name}.py: the demos ship with anytoken's source checkout")
    if "demos" not in sys.modules:  # import demos/ as a package without putting the repo root on sys.path
        spec = importlib.util.spec_from_file_location("demos", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["demos"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"demos.{name}")


def _demo(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken demo", description="Launch a Gradio app on 127.0.0.1.")
    parser.add_argument("name", choices=DEMOS)
    parser.add_argument("--ckpt", help="a release directory or .ckpt file (default: the demo's DEFAULT_CKPT)")
    parser.add_argument("--port", type=int, help="the port (default: the first free one from 7860)")
    parser.add_argument(
        "--tokenizer", action="append", default=[],
        help="tokenizers demo: a directory written by save_pretrained (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.tokenizer and args.name != "tokenizers":
        raise SystemExit("anytoken demo: --tokenizer is for the tokenizers demo only")
    with _one_line_errors("demo"):
        module = load_demo(args.name)
    extra = {"tokenizer_dirs": args.tokenizer} if args.tokenizer else {}
    from demos.widgets import launch

    launch(module.build_app(ckpt=args.ckpt, **extra), args.port)


COMMANDS = {
    "caption": _caption, "vqa": _vqa, "demo": _demo, "export": _export, "encode": _encode, "decode": _decode,
    "tokenize": _tokenize, "bench": _bench,
}


def _check_configs(argv: Sequence[str]) -> None:
    """``LoadError`` naming a ``--config`` file that is missing or not UTF-8 text (jsonargparse would give
    a traceback)."""
    from anytoken.loading import LoadError

    for i, arg in enumerate(argv):
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else arg.partition("=")[2]
        if arg.startswith("--config") and path:
            try:
                Path(path).read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise LoadError(f"{path}: the config is not UTF-8 text "
                                f"({err.reason} at byte {err.start})") from None
            except OSError as err:
                raise LoadError(f"{path}: cannot read the config ({err.strerror})") from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``anytoken`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        from anytoken.loading import LoadError

        # a bad file (e.g. init_from) or setting (max_steps: -5): one line, no traceback
        with _one_line_errors(command, (LoadError, MisconfigurationException)):
            _check_configs(rest)
            _run_cli(None if argv == sys.argv[1:] else argv, run=True)
    elif command in COMMANDS:
        from anytoken.atomic import cleanup_on_sigterm

        cleanup_on_sigterm()
        COMMANDS[command](rest)
    else:
        raise SystemExit(f"anytoken: unknown command {command!r}\n\n{USAGE}")


if __name__ == "__main__":
    main()
