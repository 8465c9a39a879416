"""Analyses over datasets and checkpoints: shape/texture bias and the background challenge under whole-readout ablation (paper Figs 16, 17), weight dynamics (Fig 25)."""
