"""The conversion pipeline: `Converter` (files -> `Document`s) and the resumable archive."""

from dsocr_connectors.pipeline.converter import NEEDS_MODEL, Converter
from dsocr_connectors.pipeline.engine_choice import EngineUnavailable
from dsocr_connectors.pipeline.feed import Job
from dsocr_connectors.pipeline.output_folder import OutputFolder, Summary

__all__ = ["NEEDS_MODEL", "Converter", "EngineUnavailable", "Job", "OutputFolder", "Summary"]
