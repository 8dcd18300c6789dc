"""Segmentor glue."""
from .encoder_decoder import SoMAEncoderDecoder

__all__ = ["SoMAEncoderDecoder"]
