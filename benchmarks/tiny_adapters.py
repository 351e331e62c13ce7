"""Write tiny random-weight models of every pretrained tokenizer adapter (anytoken.tokenizers.pretrained),
saved as the transformers library saves them, for ``anytoken bench`` to show the plumbing: their figures
are those of random weights, not of the real checkpoints (docs/pretrained_tokenizers.md says how to fetch
those). Audio codecs at 16 kHz, image VQ-VAEs at 64 px.

    python benchmarks/tiny_adapters.py --out /tmp/tiny_adapters   # needs anytoken[hub]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from anytoken.tokenizers.pretrained import Emu3VQTokenizer

RATE, IMAGE_SIZE = 16000, 64


def save_models(out: Path) -> list[Path]:
    """Save each tiny model under ``out/NAME``; returns the directories ``anytoken bench`` takes."""
    import transformers as tf

    torch.manual_seed(0)
    vq = dict(base_channels=32, channel_multiplier=[1, 1, 1], num_res_blocks=1, attn_resolutions=[],
              embed_dim=4, latent_channels=4)
    models = {
        "encodec": tf.EncodecModel(tf.EncodecConfig(
            sampling_rate=RATE, num_filters=4, hidden_size=8, upsampling_ratios=[8, 20], num_lstm_layers=1,
            codebook_size=1024, codebook_dim=8, target_bandwidths=[1.0, 2.0])),
        "dac": tf.DacModel(tf.DacConfig(
            sampling_rate=RATE, encoder_hidden_size=4, downsampling_ratios=[8, 20], upsampling_ratios=[20, 8],
            decoder_hidden_size=16, n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=8)),
        "mimi": tf.MimiModel(tf.MimiConfig(
            sampling_rate=RATE, hidden_size=16, num_filters=4, upsampling_ratios=[8, 10], codebook_size=16,
            codebook_dim=8, num_quantizers=3, vector_quantization_hidden_dimension=8, num_hidden_layers=1,
            intermediate_size=16, num_attention_heads=2, num_key_value_heads=2, upsample_groups=16,
            sliding_window=16)),
        "emu3_vq": tf.Emu3VQVAE(tf.Emu3VQVAEConfig(
            codebook_size=32, hidden_size=32, num_attention_heads=1, temporal_downsample_factor=4, **vq)),
        "chameleon_vq": tf.ChameleonVQVAE(tf.ChameleonVQVAEConfig(num_embeddings=32, resolution=IMAGE_SIZE,
                                                                  **vq)),
    }
    for name, model in models.items():
        model.save_pretrained(out / name)
    # Emu3 reads 512 px by default: anytoken's own directory of the same weights at 64 px
    emu3 = Emu3VQTokenizer.from_hub_directory(out / "emu3_vq", image_size=IMAGE_SIZE)
    emu3.save_pretrained(out / "emu3_vq_64px")
    return [out / name for name in ("encodec", "dac", "mimi", "emu3_vq_64px", "chameleon_vq")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder to write the models into")
    args = parser.parse_args()
    print("\n".join(map(str, save_models(args.out))))


if __name__ == "__main__":
    main()
