"""How results are kept: the one result record and the files of a results folder."""
