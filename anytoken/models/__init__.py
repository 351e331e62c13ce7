"""The model users load and call without Lightning, and the task formats it holds.

Importing this package registers every built-in format (``FORMATS``), so a release naming one loads.
"""

from anytoken.models.captioning import CaptionFormat
from anytoken.models.forecasting import ForecastFormat
from anytoken.models.formats import FORMATS, TaskFormat, register_format
from anytoken.models.model import AnytokenModel
from anytoken.models.pose import PoseFormat
from anytoken.models.speech import SpeakFormat, TranscribeFormat
from anytoken.models.tables import TableGenerationFormat, TablePredictionFormat
from anytoken.models.templates import TemplateFormat
from anytoken.models.text_to_image import TextToImageFormat
from anytoken.models.vqa import VQAFormat

__all__ = [
    "FORMATS", "AnytokenModel", "CaptionFormat", "ForecastFormat", "PoseFormat", "SpeakFormat",
    "TableGenerationFormat", "TablePredictionFormat", "TaskFormat", "TemplateFormat", "TextToImageFormat",
    "TranscribeFormat", "VQAFormat", "register_format",
]
