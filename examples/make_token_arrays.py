"""Writes a small token data set as the arrays `attn ... --arrays FILE.npz` reads.

Each sample is a sequence of 6 token ids in 0..9; its label (0 or 1) says whether token 3
occurs in it, which about half the sequences do. examples/token_classifier.json (Embedding,
self-attention with a residual, pooling, Dense softmax) learns it in a few epochs:

    /usr/bin/python3 examples/make_token_arrays.py tokens.npz
    ./build/attn train --model examples/token_classifier.json --arrays tokens.npz --epochs 15
"""
import sys

import numpy as np


def token_set(n, rng):
    ids = rng.integers(0, 10, size=(n, 6), dtype=np.int64)
    labels = (ids == 3).any(axis=1).astype(np.int64)
    return ids, labels


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_token_arrays.py OUT.npz")
    rng = np.random.default_rng(7)
    x_train, y_train = token_set(2000, rng)
    x_test, y_test = token_set(500, rng)
    np.savez(sys.argv[1], x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


if __name__ == "__main__":
    main()
