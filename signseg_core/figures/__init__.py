"""Plotly figures, image strips, the PNG codec and export to files."""
