"""Rendering records: HTML report, tables, figures and plotting helpers."""
