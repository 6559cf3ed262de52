"""A per-molecule step whose module takes 3 s to import (test_guard): the helper's start-up, not a molecule."""
import time

from chemlm_engine.molecules import prepare_smiles

time.sleep(3)


def prepare(text, standardization):
    return prepare_smiles(text, standardization)
