"""Image generators: codes (B, d) to images (B, 3, H, W) in [0, 1]."""
