"""Public benchmark datasets in their publishers' folder layouts, read and fingerprinted."""
