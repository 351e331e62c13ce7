"""The one image loader every real-format dataset uses (it lives in ``anytoken.tokenizers.image_io``,
where the image tokenizers read files too; see the policy there)."""

from anytoken.tokenizers.image_io import load_image

__all__ = ["load_image"]
