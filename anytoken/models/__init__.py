"""The model users load and call without Lightning, and the task formats it holds.

Importing this package registers every built-in format (``FORMATS``), so a release naming one loads.
"""

from anytoken.models.captioning import CaptionFormat
from anytoken.models.formats import FORMATS, TaskFormat, register_format
from anytoken.models.model import AnytokenModel
from anytoken.models.templates import TemplateFormat
from anytoken.models.text_to_image import TextToImageFormat

__all__ = [
    "FORMATS",
    "AnytokenModel",
    "CaptionFormat",
    "TaskFormat",
    "TemplateFormat",
    "TextToImageFormat",
    "register_format",
]
