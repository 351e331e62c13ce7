"""The field's pretrained tokenizers behind anytoken's ``Tokenizer`` interface: adapters over Hugging Face
``transformers`` models, registered like every tokenizer (docs/pretrained_tokenizers.md).

    audio: ``encodec`` (EncodecModel), ``dac`` (DacModel), ``mimi`` (MimiModel)
    image: ``emu3_vq`` (Emu3VQVAE), ``chameleon_vq`` (ChameleonVQVAE, encode only)

``Tokenizer.from_pretrained(dir)`` accepts a directory that the library's ``save_pretrained`` wrote
(``config.json`` + ``model.safetensors``); its ``model_type`` picks the adapter from ``HUB_MODELS``.
Importing this package does not import transformers (the ``hub`` extra): building an adapter does.
"""

from anytoken.tokenizers.pretrained.audio import DacTokenizer, EncodecTokenizer, HubAudioCodec, MimiTokenizer
from anytoken.tokenizers.pretrained.hub import HUB_CONFIG_FILE, HUB_MODELS, HubModel, from_hub_directory
from anytoken.tokenizers.pretrained.image import ChameleonVQTokenizer, Emu3VQTokenizer, HubImageVQ

__all__ = [
    "HUB_CONFIG_FILE", "HUB_MODELS", "ChameleonVQTokenizer", "DacTokenizer", "Emu3VQTokenizer",
    "EncodecTokenizer", "HubAudioCodec", "HubImageVQ", "HubModel", "MimiTokenizer", "from_hub_directory",
]
