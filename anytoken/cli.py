"""The ``anytoken`` command.

``anytoken fit|validate|test|predict --config configs/X.yaml`` runs Lightning's CLI (every
hyperparameter can be overridden: ``--model.init_args.lr 3e-4``); ``anytoken caption IMAGE... --ckpt
PATH`` captions image files; ``anytoken export --ckpt X.ckpt -o DIR`` writes a release directory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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


def _run_cli(argv: Sequence[str] | None, run: bool):  # noqa: ANN202 - a LightningCLI instance
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    class AnytokenCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse's parser
            parser.link_arguments("data.vocab", "model.init_args.vocab", apply_on="instantiate")

        def before_fit(self) -> None:
            t = self.trainer
            if t.max_epochs in (None, -1, 1000) and t.max_steps in (None, -1) and t.max_time is None:
                raise SystemExit(
                    "anytoken fit: set trainer.max_epochs, trainer.max_steps or trainer.max_time "
                    "(Lightning would otherwise train for 1000 epochs)"
                )

    return AnytokenCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={cmd: {"allow_abbrev": False} for cmd in LIGHTNING_COMMANDS}
        if run
        else {"allow_abbrev": False},
        args=None if argv is None else list(argv),
        run=run,
    )


def _lightning(argv: Sequence[str]) -> None:
    _run_cli(None if list(argv) == sys.argv[1:] else argv, run=True)


def from_config(config: str | Path, *overrides: str):  # noqa: ANN201 - a LightningCLI instance
    """Instantiate model, datamodule and trainer from a YAML config without running anything.

    Example:
        >>> cli = from_config("configs/caption_scenes.yaml", "--trainer.max_epochs=1")
        >>> cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    """
    return _run_cli(["--config", str(config), *overrides], run=False)


def _caption(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken caption", description="Caption image files.")
    parser.add_argument("images", nargs="+", help="image files (any PIL format; converted to RGB)")
    parser.add_argument("--ckpt", required=True, help="a .ckpt file or a release directory")
    parser.add_argument("--strategy", choices=("greedy", "sample", "beam"), default="greedy")
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    import torch

    from anytoken import load
    from anytoken.heads import DecodingConfig
    from anytoken.tokenizers.image_io import image_to_tensor, load_image

    try:
        model = load(args.ckpt)
        model.task_format("caption")
        encoder = model.image_encoder  # None: images enter as VQ tokens, at the image tokenizer's size
        size = encoder.config.image_size if encoder is not None else model.tokenizers["image"].cfg.image_size
        images = torch.stack([image_to_tensor(load_image(p), size) for p in args.images])
    except (ValueError, FileNotFoundError) as err:
        _fail("caption", err)
    decoding = DecodingConfig(
        strategy=args.strategy, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens
    )
    for path, caption in zip(args.images, model.caption(images, decoding)):
        print(f"{path}\t{caption}")


def _fail(command: str, err: BaseException) -> NoReturn:
    """Exit 1 with one line naming the command and the problem (no traceback)."""
    raise SystemExit(f"anytoken {command}: {err}") from None


def _export(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken export", description="Write a release directory.")
    parser.add_argument("--ckpt", required=True, help="a Lightning .ckpt file")
    parser.add_argument("-o", "--output", required=True, help="the release directory to write")
    args = parser.parse_args(argv)
    from anytoken import load

    try:
        load(args.ckpt).save_pretrained(args.output)
    except (ValueError, FileNotFoundError) as err:
        _fail("export", err)
    print(f"release written to {args.output}")


def _encode(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken encode", description="Media file -> token ids (.npy).")
    parser.add_argument("media", help="the media file (image, audio, ... as the tokenizer reads)")
    parser.add_argument("--tokenizer", required=True, help="a directory written by save_pretrained")
    parser.add_argument("-o", "--output", required=True, help="the .npy file of local token ids to write")
    args = parser.parse_args(argv)
    import numpy as np

    from anytoken.atomic import atomic_path
    from anytoken.tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        ids = tokenizer.encode(tokenizer.read_media(Path(args.media)))
    except (ValueError, FileNotFoundError, NotImplementedError) as err:
        raise SystemExit(f"anytoken encode: {err}") from None
    with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
        np.save(f, ids.cpu().numpy())
    print(f"{args.media}: {ids.numel()} tokens {tuple(ids.shape)} -> {args.output}")


def _decode(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken decode", description="Token ids (.npy) -> media file.")
    parser.add_argument("tokens", help="a .npy file of local token ids (from anytoken encode)")
    parser.add_argument("--tokenizer", required=True, help="a directory written by save_pretrained")
    parser.add_argument("-o", "--output", required=True, help="the media file to write")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from anytoken.atomic import atomic_path
    from anytoken.tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        try:
            array = np.load(args.tokens, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{args.tokens} is not a readable .npy file ({err})") from None
        media = tokenizer.decode(torch.from_numpy(array))
        with atomic_path(args.output) as tmp:
            tokenizer.write_media(media, tmp)
    except (ValueError, FileNotFoundError, NotImplementedError) as err:
        raise SystemExit(f"anytoken decode: {err}") from None
    print(f"{args.tokens} -> {args.output}")


def _vqa(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="anytoken vqa", description="Answer a question about an image.")
    parser.add_argument("image", help="an image file (any PIL format; converted to RGB)")
    parser.add_argument("question", help='the question, e.g. "what color is the circle?"')
    parser.add_argument("--ckpt", required=True, help="a .ckpt file or a release directory of a VQA model")
    parser.add_argument("--strategy", choices=("greedy", "sample", "beam"), default="greedy")
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    from anytoken import load
    from anytoken.heads import DecodingConfig
    from anytoken.tokenizers.image_io import image_to_tensor, load_image

    try:
        model = load(args.ckpt)
        model.task_format("vqa")
        image = image_to_tensor(load_image(args.image), model.image_encoder.config.image_size)[None]
        decoding = DecodingConfig(args.strategy, args.max_new_tokens, num_beams=args.num_beams)
        print(model.ask(image, [args.question], decoding=decoding)[0])
    except (ValueError, FileNotFoundError) as err:
        _fail("vqa", err)


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
        spec = importlib.util.spec_from_file_location(
            "demos", root / "__init__.py", submodule_search_locations=[str(root)]
        )
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
        "--tokenizer",
        action="append",
        default=[],
        help="tokenizers demo: a directory written by save_pretrained (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.tokenizer and args.name != "tokenizers":
        raise SystemExit("anytoken demo: --tokenizer is for the tokenizers demo only")
    try:
        module = load_demo(args.name)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"anytoken demo: {err}") from None
    extra = {"tokenizer_dirs": args.tokenizer} if args.tokenizer else {}
    from demos.widgets import launch

    launch(module.build_app(ckpt=args.ckpt, **extra), args.port)


COMMANDS = {
    "caption": _caption,
    "vqa": _vqa,
    "demo": _demo,
    "export": _export,
    "encode": _encode,
    "decode": _decode,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``anytoken`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        _lightning(argv)
    elif command in COMMANDS:
        COMMANDS[command](rest)
    else:
        raise SystemExit(f"anytoken: unknown command {command!r}\n\n{USAGE}")


if __name__ == "__main__":
    main()
