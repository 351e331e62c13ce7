"""Image preprocessing shared by the DataModules (it lives in ``anytoken.tokenizers.image_io``, where the
image tokenizers use the same resize/crop policy; see there)."""

from anytoken.tokenizers.image_io import image_to_tensor

__all__ = ["image_to_tensor"]
