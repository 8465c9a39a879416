"""What the paper measures about images: similarity, LPIPS, objectness, spectra, statistics."""
