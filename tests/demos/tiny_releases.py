"""Tiny untrained releases for the demo tests, and an app served on 127.0.0.1 with a client."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from test_mixture import ENTRIES, MODEL  # noqa: E402 - the mixture tests' tiny tasks and model

TINY = {
    "backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 96},
    "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 4},
    "decoding": {"max_new_tokens": 6},
}
GENERATION_FORMATS = {  # every task the generation app has a tab for, in one model
    "draw": {"kind": "text_to_image"},
    "speak": {"kind": "speak", "max_seconds": 0.25},
    "rows": {"kind": "table_generation"},
    "pose": {"kind": "pose_estimation"},
    "forecast": {"kind": "forecast", "num_futures": 2},
}


def scene_vocab() -> dict:
    """A captioning/VQA vocabulary: a BPE of scene captions and questions, image features, 3 answers."""
    from anytoken.tasks.data.synthetic.scenes import make_scenes
    from anytoken.tokenizers import BPETokenizer, TokenSpace

    scenes = make_scenes("train", 200)
    corpus = [s.caption() for s in scenes] + [qa.question for s in scenes for qa in s.questions()]
    bpe = BPETokenizer.train(corpus, vocab_size=280)
    space = TokenSpace({"text": bpe.vocab_size, "image": 0}, tasks=("caption", "vqa"))
    answers = ["yes", "no", "red"]
    return {"token_space": space.to_dict(), "tokenizers": {"text": bpe.spec()}, "answers": answers}


def tiny_codec():  # noqa: ANN201 - an untrained AudioCodecTokenizer: 8 kHz, 40 frames/s, 4 levels of 16
    from anytoken.tokenizers.audio_codec import AudioCodecTokenizer

    return AudioCodecTokenizer(sample_rate=8000, strides=[10, 20], encoder_channels=4, decoder_channels=16,
                               dilations=[1], latent_dim=8, codebook_size=16, num_quantizers=4).eval()


def generation_model():  # noqa: ANN202 - an AnytokenModel with every generation task
    from anytoken.models import AnytokenModel
    from anytoken.tasks.data.synthetic.scenes import make_scenes
    from anytoken.tasks.data.tables import load_bundled
    from anytoken.tokenizers import BPETokenizer, TableTokenizer, TokenSpace
    from anytoken.tokenizers.image_vq import ImageVQTokenizer
    from anytoken.tokenizers.pose import PoseTokenizer
    from anytoken.tokenizers.trajectory import TrajectoryTokenizer

    tokenizers = {
        "text": BPETokenizer.train([s.caption() for s in make_scenes("train", 200)], vocab_size=280),
        "image": ImageVQTokenizer(image_size=32, downsample=16, channels=8, encoder_channels=8,
                                  channel_mult=[1, 1, 1, 1], codebook_size=16, latent_dim=4),
        "audio": tiny_codec(),
        "table": TableTokenizer.fit(load_bundled("iris"), n_bins=4),
        "pose": PoseTokenizer(num_bins=16),
        "trajectory": TrajectoryTokenizer(num_bins=9),
    }
    tags = ("draw", "speak", "table_generate", "pose_estimation", "forecast")
    space = TokenSpace.from_tokenizers(tokenizers, tasks=tags)
    vocab = {"token_space": space.to_dict(), "tokenizers": {m: t.spec() for m, t in tokenizers.items()}}
    backbone = {**TINY["backbone"], "max_seq_len": 256}
    return AnytokenModel(vocab, GENERATION_FORMATS, backbone, TINY["image_encoder"],
                         decoding={"max_new_tokens": 8})


def anything_model():  # noqa: ANN201 - an untrained MixtureModule of caption, pose, table and forecast
    """The mixture tests' tiny tasks in one any-to-any model (the forecast samples one future)."""
    from anytoken.tasks.data.mixture import MixtureDataModule
    from anytoken.tasks.mixture import MixtureModule

    forecast = ENTRIES["forecast"] | {"format": {"kind": "forecast", "num_futures": 1}}
    return MixtureModule(MixtureDataModule(ENTRIES | {"forecast": forecast}).vocab, **MODEL)


def serve(app):  # noqa: ANN001, ANN201 - a gr.Blocks -> (gradio_client.Client, url)
    """Launch ``app`` on 127.0.0.1 (a free port, in a thread) and connect a client to it."""
    from gradio_client import Client

    from demos.widgets import launch  # importable once load_demo has registered the demos package

    url = launch(app, block=False)
    return Client(url, verbose=False, analytics_enabled=False, download_files=False), url
