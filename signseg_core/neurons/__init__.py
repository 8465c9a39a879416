"""Models of recorded neurons (paper 4.6): data, PLS fits, the study workflow, localization."""
