"""Models of recorded neurons (paper 4.6): data, PLS fits, readouts, the study workflow, the
population response (Fig. 7), the extrapolation test (Fig. 21) and localization."""
