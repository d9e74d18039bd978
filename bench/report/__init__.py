"""How results are shown: plot data, plots and the README of a results folder."""
