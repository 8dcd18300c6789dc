"""Analyses of trained models (the library part of tools/analysis/)."""
