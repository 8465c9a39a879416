"""python -m signseg_core: argument parsing and printing only."""
