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
  caption IMAGE... --ckpt PATH      caption image files with a checkpoint (.ckpt) or release directory
  vqa IMAGE "QUESTION" --ckpt PATH  answer a question about an image file with a VQA model
  demo captioning|vqa|tokenizers|anything   launch a Gradio app on 127.0.0.1 (--ckpt, --port)
  export --ckpt X.ckpt -o DIR       write a release directory (config.json + model.safetensors)
  encode MEDIA --tokenizer DIR -o X.npy    media file -> local token ids
  decode X.npy --tokenizer DIR -o MEDIA    local token ids -> media file

run 'anytoken COMMAND --help' for a command's options."""
TOKENIZER_ERRORS = (ValueError, FileNotFoundError, NotImplementedError)


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
    size = encoder.config.image_size if encoder is not None else model.tokenizers["image"].cfg.image_size
    images = torch.stack([image_to_tensor(load_image(p), size) for p in paths])
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
    parser = argparse.ArgumentParser(prog=f"anytoken {command}", description=description)
    parser.add_argument("source", help=source)
    parser.add_argument("--tokenizer", required=True, help="a directory written by save_pretrained")
    parser.add_argument("-o", "--output", required=True, help=output)
    return parser.parse_args(argv)


def _encode(argv: Sequence[str]) -> None:
    args = _tokenizer_args(
        argv, "encode", "Media file -> token ids (.npy).",
        "the media file (image, audio, ... as the tokenizer reads)", "the .npy file of token ids to write",
    )
    import numpy as np

    from anytoken.atomic import atomic_path
    from anytoken.tokenizers import Tokenizer

    with _one_line_errors("encode"):
        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        ids = tokenizer.encode(tokenizer.read_media(Path(args.source)))
    with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
        np.save(f, ids.cpu().numpy())
    print(f"{args.source}: {ids.numel()} tokens {tuple(ids.shape)} -> {args.output}")


def _decode(argv: Sequence[str]) -> None:
    args = _tokenizer_args(
        argv, "decode", "Token ids (.npy) -> media file.",
        "a .npy file of local token ids (from anytoken encode)", "the media file to write",
    )
    import numpy as np
    import torch

    from anytoken.atomic import atomic_path
    from anytoken.tokenizers import Tokenizer

    with _one_line_errors("decode"):
        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        try:
            array = np.load(args.source, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{args.source} is not a readable .npy file ({err})") from None
        media = tokenizer.decode(torch.from_numpy(array))
        with atomic_path(args.output) as tmp:
            tokenizer.write_media(media, tmp)
    print(f"{args.source} -> {args.output}")


DEMOS = ("captioning", "vqa", "tokenizers", "anything")  # demos/NAME.py: build_app(ckpt=...) -> gr.Blocks


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
    "caption": _caption, "vqa": _vqa, "demo": _demo, "export": _export, "encode": _encode, "decode": _decode
}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``anytoken`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from anytoken.loading import LoadError

        with _one_line_errors(command, (LoadError,)):  # a bad file (e.g. init_from): one line, no traceback
            _run_cli(None if argv == sys.argv[1:] else argv, run=True)
    elif command in COMMANDS:
        COMMANDS[command](rest)
    else:
        raise SystemExit(f"anytoken: unknown command {command!r}\n\n{USAGE}")


if __name__ == "__main__":
    main()
