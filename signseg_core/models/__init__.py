"""Networks: the registry of names, the zoo wrapper, weight sources, checkpoints, ImageNet names."""
